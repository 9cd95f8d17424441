"""bwc_console verifies from the wire formats alone: no module of it imports the agent (or the
emulator, or the tests), so nothing the dock gets wrong can be "right" by shared code."""

from __future__ import annotations

import ast
from pathlib import Path

import bwc_console

PACKAGE = Path(bwc_console.__file__).parent
FORBIDDEN = ("agent", "camsim", "tests")


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names.add("<dynamic __import__>")
        elif isinstance(node, ast.Attribute) and node.attr == "import_module":
            names.add("<importlib.import_module>")
    return names


def test_no_module_imports_the_agent() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 10
    offenders = {}
    for path in modules:
        names = _imported(ast.parse(path.read_text(), str(path)))
        bad = sorted(n for n in names if n.split(".")[0] in FORBIDDEN or n.startswith("<"))
        if bad:
            offenders[path.name] = bad
    assert offenders == {}


def test_it_uses_the_protocol_package_for_the_signed_layouts() -> None:
    text = (PACKAGE / "manifest_check.py").read_text()
    assert "from firmware_protocol.signing import" in text
