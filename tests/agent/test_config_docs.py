"""docs/configuration.md and agent.config must describe the same keys, defaults and example."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from agent.config import config_keys, load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ROW = re.compile(r"^\|\s*`([a-z_.]+)`\s*\|([^|]*)\|([^|]*)\|")
MINIMAL = 'dock_id = "dock-01"\nunit = "zhanhe"\n'


def documented() -> dict[str, str]:
    """Key → default cell of every table row whose first cell is a backticked key."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            assert m[1] not in rows, f"{m[1]} documented twice"
            rows[m[1]] = m[3].strip()
    return rows


def example() -> str:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"^```toml\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) == 1, "docs/configuration.md must hold exactly one toml example"
    return str(blocks[0])


def test_every_key_documented_and_nothing_else() -> None:
    keys = config_keys()
    assert len(keys) == 35
    assert sorted(documented()) == sorted(keys)


@pytest.mark.parametrize("key", [k for k, d in documented().items() if d.startswith("`")])
def test_documented_default_is_the_default(tmp_path: Path, key: str) -> None:
    # Writing the documented default explicitly must give the same Config as leaving it out.
    literal = documented()[key].strip("`")
    tomllib.loads(f"x = {literal}")  # the cell must be a TOML value
    table, _, name = key.rpartition(".")
    line = f"{name} = {literal}\n"
    text = MINIMAL + (f"[{table}]\n{line}" if table else line)
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    default_path = tmp_path / "default.toml"
    default_path.write_text(MINIMAL, encoding="utf-8")
    assert load_config(path) == load_config(default_path)


def test_keys_without_literal_default_are_required_or_unset() -> None:
    others = {k: d for k, d in documented().items() if not d.startswith("`")}
    assert {k for k, d in others.items() if d == "*(required)*"} == {"dock_id", "unit"}
    assert {k for k, d in others.items() if d == "*(unset)*"} == {
        "tls.ca_file", "tls.cert_file", "tls.key_file", "tls.key_password_file"}


def test_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(example(), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.dock_id == "zhanhe-dock-01"
    assert cfg.broker_address is not None and cfg.broker_address.tls
    assert cfg.tls.ca_file == Path("/etc/bwc-dock/tls/ca.pem")
    assert cfg.topic_prefix_resolved == "bwc/zhanhe-legal/zhanhe-dock-01"
