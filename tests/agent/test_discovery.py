"""SerialDiscovery: the watched paths that lead to a device node, each with an identity that
changes when the path is created anew (a camera plugged in again)."""

from __future__ import annotations

import os
from pathlib import Path

from agent.transports.discovery import SerialDiscovery


def test_links_to_existing_nodes_are_found_dangling_ones_are_not(tmp_path: Path) -> None:
    (tmp_path / "usb-a-bwc").symlink_to("/dev/null")
    (tmp_path / "usb-b-bwc").symlink_to(tmp_path / "no-such-node")
    (tmp_path / "other").symlink_to("/dev/null")
    found = SerialDiscovery([f"{tmp_path}/*bwc*"]).scan()
    assert set(found) == {f"{tmp_path}/usb-a-bwc"}


def test_overlapping_patterns_report_a_path_once(tmp_path: Path) -> None:
    (tmp_path / "usb-a-bwc").symlink_to("/dev/null")
    found = SerialDiscovery([f"{tmp_path}/*bwc*", f"{tmp_path}/usb-*"]).scan()
    assert list(found) == [f"{tmp_path}/usb-a-bwc"]


def test_identity_is_stable_and_changes_when_the_link_is_made_again(tmp_path: Path) -> None:
    link = tmp_path / "usb-a-bwc"
    link.symlink_to("/dev/null")
    discovery = SerialDiscovery([f"{tmp_path}/*bwc*"])
    first = discovery.scan()[str(link)]
    assert discovery.scan()[str(link)] == first
    # Replugged: the link is created again (as udev and camsim do, by an atomic rename).
    tmp = tmp_path / ".tmp-link"
    tmp.symlink_to("/dev/null")
    keep = tmp_path / "keep"  # hold the old inode so that its number cannot be reused
    os.link(link, keep, follow_symlinks=False)
    os.replace(tmp, link)
    assert discovery.scan()[str(link)] != first
