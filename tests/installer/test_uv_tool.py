"""The pinned uv the installers carry: its hash is checked before anything is staged.

No network: a small wheel made here (named and laid out like uv's) is offered to the real
``pip download --require-hashes`` through ``--find-links``; the committed tools lock is only read.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from installer_scripts import load

uv_tool = load("linux/uv_tool")

pytestmark = pytest.mark.installers

VERSION = "0.13.8"
FAKE_BINARY = b"#!/bin/sh\necho 'uv 0.13.8 (fake)'\n"


def fake_uv_wheel(folder: Path, platform: str = "linux") -> Path:
    """A minimal valid wheel called like uv's, holding ``uv-VERSION.data/scripts/uv``."""
    tag, name = uv_tool.PLATFORMS[platform]
    wheel = folder / ("uv-%s-py3-none-%s.whl" % (VERSION, tag))
    info = "uv-%s.dist-info/" % VERSION
    with zipfile.ZipFile(str(wheel), "w") as archive:
        archive.writestr("uv-%s.data/scripts/%s" % (VERSION, name), FAKE_BINARY)
        archive.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: uv\nVersion: %s\n"
                         % VERSION)
        archive.writestr(info + "WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                         "Root-Is-Purelib: false\nTag: py3-none-%s\n" % tag)
        archive.writestr(info + "RECORD", "")
    return wheel


def lock_for(tmp_path: Path, digest: str) -> Path:
    lock = tmp_path / "tools.lock"
    lock.write_text("# test\nuv==%s \\\n    --hash=sha256:%s\n" % (VERSION, digest))
    return lock


@pytest.fixture
def wheels(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    return folder, fake_uv_wheel(folder)


def test_the_committed_lock_pins_one_version_with_two_hashes():
    text = uv_tool.TOOLS_LOCK.read_text()
    assert uv_tool.pinned_version() == VERSION
    assert len([line for line in text.splitlines() if "--hash=sha256:" in line]) == 2


def test_a_matching_hash_stages_the_executable_binary(wheels, tmp_path):
    folder, wheel = wheels
    lock = lock_for(tmp_path, hashlib.sha256(wheel.read_bytes()).hexdigest())
    binary = uv_tool.fetch_uv("linux", tmp_path / "staged", lock, find_links=folder)
    assert binary == tmp_path / "staged" / "uv"
    assert binary.read_bytes() == FAKE_BINARY and binary.stat().st_mode & 0o111
    assert [p.name for p in binary.parent.iterdir()] == ["uv"]  # no .partial left


def test_a_wrong_hash_fails_in_one_line_and_stages_nothing(wheels, tmp_path):
    folder, _ = wheels
    lock = lock_for(tmp_path, "0" * 64)
    with pytest.raises(uv_tool.FetchError) as raised:
        uv_tool.fetch_uv("linux", tmp_path / "staged", lock, find_links=folder)
    message = str(raised.value)
    assert "\n" not in message and "SHA-256" in message and VERSION in message
    assert not (tmp_path / "staged").exists()


def test_a_missing_wheel_fails_in_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(uv_tool.FetchError) as raised:
        uv_tool.fetch_uv("windows", tmp_path / "staged", lock_for(tmp_path, "0" * 64),
                         find_links=empty)
    assert "\n" not in str(raised.value) and "win_amd64" in str(raised.value)
    assert not (tmp_path / "staged").exists()


def test_a_wheel_without_the_binary_is_refused(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    wheel = fake_uv_wheel(folder, "windows")  # holds uv.exe, asked for as the Linux binary
    renamed = wheel.with_name(wheel.name.replace("win_amd64", "manylinux_2_17_x86_64"))
    wheel.rename(renamed)
    lock = lock_for(tmp_path, hashlib.sha256(renamed.read_bytes()).hexdigest())
    with pytest.raises(uv_tool.FetchError, match="no uv-0.13.8.data/scripts/uv in it"):
        uv_tool.fetch_uv("linux", tmp_path / "staged", lock, find_links=folder)
    assert not (tmp_path / "staged" / "uv").exists()


def test_the_committed_lock_is_what_make_locks_uv_pin_writes():
    text = uv_tool.TOOLS_LOCK.read_text()
    hashes = [line.split("sha256:")[1].split()[0] for line in text.splitlines()
              if "--hash=sha256:" in line]
    assert uv_tool.lock_text(uv_tool.pinned_version(), hashes) == text
