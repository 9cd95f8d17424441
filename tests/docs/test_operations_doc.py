"""docs/operations.md: every command, option, path and message it quotes exists in the code."""

from __future__ import annotations

import re
import shlex
from dataclasses import fields
from pathlib import Path

import pytest

from agent import cli
from agent.config import DEFAULT_CONFIG_PATH, Config, load_config
from agent.daemon import StatePaths
from agent.store.keys import SIGNING_KEY_FILE, WRAP_KEY_FILE

from .mqtt_doc import ROOT

OPS = ROOT / "docs" / "operations.md"
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "bwc-dock-agent.service"
DEFAULT_STATE_DIR = next(f.default for f in fields(Config) if f.name == "state_dir")


def text() -> str:
    return OPS.read_text(encoding="utf-8")


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text(), re.S)


def unit_value(key: str) -> str:
    values = re.findall(rf"^{key}=(.*)$", UNIT.read_text(encoding="utf-8"), re.M)
    assert values, f"{key}= missing from the unit"
    return values[-1].strip()


def dock_agent_invocations() -> list[list[str]]:
    """Every `dock-agent …` command line in the shell blocks and in inline code."""
    lines: list[str] = []
    for block in code_blocks("sh"):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"`([^`]*dock-agent [^`]*)`", text())
    found = []
    for line in lines:
        line = line.split("#")[0]
        for match in re.finditer(r"(?:^|\s)dock-agent (.*)$", line):
            words = shlex.split(match[1].replace("…", "X"))
            if words and re.fullmatch(r"[a-z]+", words[0]):
                found.append(words)
    return found


def help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0, f"dock-agent {command} is not a subcommand"
    return capsys.readouterr().out


def test_every_dock_agent_command_and_option_exists(capsys: pytest.CaptureFixture[str]) -> None:
    invocations = dock_agent_invocations()
    used = {words[0] for words in invocations}
    assert {"identity", "enroll", "cameras", "status", "verify", "export"} <= used
    for words in invocations:
        if words[0] == "<command>":
            continue
        helptext = help_text(words[0], capsys)
        for option in (w.split("=")[0] for w in words[1:] if w.startswith("--")):
            assert option in helptext, f"dock-agent {words[0]} has no {option}"


def test_the_documented_configuration_loads(tmp_path: Path) -> None:
    blocks = code_blocks("toml")
    assert blocks
    for i, block in enumerate(blocks):
        path = tmp_path / f"agent{i}.toml"
        path.write_text(block, encoding="utf-8")
        config = load_config(path)
        assert config.state_dir == DEFAULT_STATE_DIR  # the unit's StateDirectory= only
        assert all(p.startswith("/dev/bwc/") for p in config.serial_ports)


def test_paths_match_the_code_and_the_unit() -> None:
    doc = text()
    assert str(DEFAULT_CONFIG_PATH) in doc
    state = Path(f"/var/lib/{unit_value('StateDirectory')}")
    assert state == DEFAULT_STATE_DIR and str(state) in doc
    exec_start = unit_value("ExecStart")
    assert exec_start == f"/usr/bin/dock-agent run --config {DEFAULT_CONFIG_PATH}"
    assert "ln -sf /opt/bwc-dock/bin/dock-agent /usr/bin/dock-agent" in doc
    assert "/usr/bin/dock-agent run --config\n  /etc/bwc-dock/agent.toml" in doc
    user = unit_value("User")
    assert user == unit_value("Group") == "bwc-dock"
    assert f"sudo -u {user} dock-agent" in doc
    assert "/usr/share/doc/bwc-dock/operations.md" in unit_value("Documentation")
    assert "/usr/share/doc/bwc-dock/operations.md" in doc
    assert f"systemctl enable --now {UNIT.stem}" in doc
    assert f"journalctl -u {UNIT.stem}" in doc


def test_install_commands_match_the_files_in_systemd() -> None:
    doc = text()
    for name in re.findall(r"(?<![\w/])systemd/([\w.-]+)", doc):
        assert (SYSTEMD / name).is_file(), f"systemd/{name} does not exist"
    # Each file's own header says where it goes and how it is applied.
    for name in ("bwc-dock.sysusers", "bwc-dock.tmpfiles"):
        header = (SYSTEMD / name).read_text(encoding="utf-8")
        target = re.search(r"install to (\S+),", header)
        apply = re.search(r"then: (systemd-\S+ [^\n]+)", header)
        assert target and apply
        assert f"systemd/{name} {target[1]}" in doc
        assert f"sudo {apply[1].strip()}" in doc
    assert "/etc/udev/rules.d/" in (SYSTEMD / "60-bwc-dock.rules").read_text(encoding="utf-8")
    assert "sudo udevadm control --reload" in doc
    assert re.search(r"^d /etc/bwc-dock 0750 root bwc-dock", (SYSTEMD / "bwc-dock.tmpfiles")
                     .read_text(encoding="utf-8"), re.M)
    assert "`/etc/bwc-dock` (0750, `root:bwc-dock`)" in doc


def test_unit_timings_quoted_in_the_doc() -> None:
    doc = text()
    assert int(unit_value("WatchdogSec")) // 2 == 15 and "refreshed every 15 s" in doc
    assert unit_value("RestartSec") == "5" and "systemd retries every 5 s" in doc
    assert unit_value("TimeoutStopSec") == "10" and "within the unit's 10 s" in doc


def test_state_directory_contents_are_named_as_in_the_code() -> None:
    doc = text()
    paths = StatePaths(Path("/var/lib/bwc-dock"))
    names = [SIGNING_KEY_FILE, WRAP_KEY_FILE, paths.registry.name, paths.status.name,
             f"{paths.outbox.name}/", f"{paths.footage.name}/", "journal/"]
    for name in names:
        assert f"`{name}`" in doc, name
    assert "/var/lib/bwc-dock/footage/quarantine/<recording_id>.<n>/" in doc
    assert "/var/lib/bwc-dock/journal/audit/" in doc


@pytest.mark.parametrize("fragment", [
    "dropping torn tail", "recovered %d interrupted finalisations", "session=%s %s",
    "event %s camera=%s", "connected to %s:%d", "unreachable; retrying with back-off",
    "dock-agent {args.command}: error:", "no status at", "refusing to overwrite",
])
def test_quoted_log_and_error_messages_exist(fragment: str) -> None:
    sources = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "agent").rglob("*.py"))
    assert fragment in sources
