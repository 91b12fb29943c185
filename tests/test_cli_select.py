"""``metahuman strategies`` and ``metahuman select`` through the real console entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import orjson
import pytest

from metahuman_lib.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metahuman_lib", *args], capture_output=True, text=True, check=False,
                          env=dict(os.environ), timeout=120)


def test_strategies_lists_every_set(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("biweekly       Bi-weekly update")
    assert "heavy-history" in out and "foundation" in out


def test_strategies_show_and_unknown(capsys):
    assert main(["strategies", "--show", "biweekly"]) == 0
    assert "  days_recent: 14\n  old_samples: 2000\n" in capsys.readouterr().out
    assert main(["strategies", "--show", "biweekly2"]) == 2
    assert "error: Unknown strategy 'biweekly2' (did you mean 'biweekly'?)" in capsys.readouterr().err


def test_select_writes_a_run(demo_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(demo_root, root)  # the run fixes the old probe under the profile
    run_dir = tmp_path / "run"
    result = _run("select", "--root", str(root), "--strategy", "monthly", "--old-samples", "50",
                  "--mode", "emulation", "--seed", "3", "--now", "2025-11-30T00:00:00Z", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    counts = manifest["selection"]["counts"]
    assert counts["old_selected"] == 50
    assert f"train: {counts['train_samples']} samples" in result.stdout
    assert manifest["selection"]["parameters"]["mode"] == "emulation"
    lines = (run_dir / "dataset.jsonl").read_bytes().splitlines()
    assert len(lines) == counts["train_samples"]
    assert {orjson.loads(line)["metadata"]["mode"] for line in lines} == {"emulation"}
    assert (root / "profiles" / "demo" / "out" / "eval" / "old_probe_ids.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "duel"], "error: Unknown mode 'duel' (did you mean 'dual'?)"),
        (["--old-sampling", "strat"], "error: Unknown old_sampling 'strat'"),
        (["--now", "soon"], "error: now must be an ISO 8601 time"),
    ],
)
def test_select_bad_flags(demo_root, args, message):
    result = _run("select", "--root", str(demo_root), *args)
    assert result.returncode == 2 and message in result.stderr
