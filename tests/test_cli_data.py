"""``metahuman demo-profile`` and ``metahuman load``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metahuman_lib.cli import main
from metahuman_lib.memory import load_memories
from metahuman_lib.profile import ROOT_ENV_VAR, Profile


def test_demo_profile_writes_and_summarizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo-profile", "--username", "cli", "--root", str(tmp_path), "--memories", "80",
                 "--months", "1", "--seed", "5"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("wrote demo profile 'cli' (80 memories, 1 months, seed 5)\n")
    assert "80 memories loaded from 90 files" in out
    for heading in ("by mode:", "by type:", "by month (UTC):", "by folder:", "skipped 10 files:"):
        assert heading in out
    assert "  encrypted                3\n" in out
    assert len(load_memories(Profile(tmp_path, "cli"))[0]) == 80


def test_demo_profile_refuses_to_overwrite_without_flag(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo-profile", "--root", str(tmp_path), "--memories", "10", "--months", "1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: A demo profile already exists at ") and err.count("\n") == 1
    assert main([*args, "--overwrite", "--memories", "12"]) == 0


def test_load_prints_counts(demo_profile: Profile, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "-u", "demo", "--root", str(demo_profile.root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"profile 'demo' at {demo_profile.episodic_dir}"
    assert lines[1].startswith("600 memories loaded from 610 files (")
    assert lines[1].endswith(" UTC)")
    mode_lines = lines[lines.index("by mode:") + 1: lines.index("by mode:") + 4]
    assert sorted(line.split()[0] for line in mode_lines) == ["agent", "dual", "emulation"]
    assert sum(int(line.split()[1]) for line in mode_lines) == 600
    assert "  not_utf8                 1" in lines


def test_load_uses_metahuman_root(demo_profile: Profile, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV_VAR, str(demo_profile.root))
    assert main(["load", "--username", "demo"]) == 0
    assert "600 memories loaded" in capsys.readouterr().out


@pytest.mark.parametrize(("username", "message"), [
    ("ghost", "error: No MetaHuman OS profile for 'ghost': expected the folder "),
    ("../etc", "error: Invalid username '../etc'"),
])
def test_load_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], username: str,
                                  message: str) -> None:
    assert main(["load", "--username", username, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_load_requires_username(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load"]) == 2
    assert "Missing option '--username'" in capsys.readouterr().err


def test_console_entry_point_runs_as_a_process(demo_profile: Profile) -> None:
    result = subprocess.run([sys.executable, "-m", "metahuman_lib", "load", "--username", "demo",
                             "--root", str(demo_profile.root)], capture_output=True, text=True,
                            env=os.environ.copy(), timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "600 memories loaded from 610 files" in result.stdout
