"""``metahuman curate``: writes the dataset, prints the seed's metrics block, --strict exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metahuman_lib.samples import read_samples_jsonl


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metahuman_lib", "curate", *args],
                          check=False, capture_output=True, text=True, env=dict(os.environ),
                          timeout=120)


@pytest.fixture(scope="module")
def curated(demo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("curate") / "preview.json"
    dropped = out.parent / "dropped.csv"
    proc = _run("--username", "demo", "--root", str(demo_root), "--output", str(out),
                "--dropped", str(dropped))
    return proc, out, dropped


def test_curate_writes_samples_and_prints_metrics(curated) -> None:
    proc, out, dropped = curated
    assert proc.returncode == 0, proc.stderr
    samples = read_samples_jsonl(out)
    assert proc.stdout.splitlines()[0] == f"Wrote {len(samples):,} samples to {out}"
    assert proc.stdout.splitlines()[1] == ("Skipped 10 files by reason: encrypted 3, invalid_json 2, empty_content 1, "
                                           "missing_timestamp 1, not_object 1, not_utf8 1, wrong_field_type 1")
    assert "- Short samples (<=40 words): " in proc.stdout
    assert "Quality metrics (" in proc.stdout and "Gates (foundation):" in proc.stdout
    assert "warning: gate sample_count failed: only" in proc.stderr  # the demo is small
    assert dropped.read_text().splitlines()[0] == "memory_id,path,type,reason,detail"


def test_curate_strict_fails_on_a_failed_gate(demo_root: Path, tmp_path: Path) -> None:
    proc = _run("--username", "demo", "--root", str(demo_root), "--output", str(tmp_path / "s.jsonl"),
                "--mode", "dual", "--strict")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: Quality gates failed: sample_count: only ")
    assert set(read_samples_jsonl(tmp_path / "s.jsonl")["mode"]) == {"dual"}


@pytest.mark.parametrize(("args", "message"), [
    (["--mode", "dul"], "error: Unknown mode 'dul': use one of dual, emulation, agent. Did you mean 'dual'?"),
    (["--kind", "weekly"], "error: Unknown --kind 'weekly': use 'foundation' or 'monthly'."),
])
def test_curate_bad_options_exit_2(demo_root: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = _run("--username", "demo", "--root", str(demo_root), "--output", str(tmp_path / "s.jsonl"), *args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message


def test_curate_output_is_atomic_on_a_full_disk(demo_root: Path, tmp_path: Path) -> None:
    """The kernel refuses writes past a file-size limit (EFBIG), as a full disk refuses them
    (ENOSPC): the good file from before stays whole, and the error is one line naming it."""
    import resource
    import signal

    out = tmp_path / "samples.jsonl"
    good = b'{"messages": [], "metadata": {}}\n' * 3
    out.write_bytes(good)

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))

    proc = subprocess.run([sys.executable, "-m", "metahuman_lib", "curate", "--username", "demo", "--root",
                           str(demo_root), "--output", str(out)], check=False, capture_output=True, text=True,
                          env=dict(os.environ), timeout=120, preexec_fn=small_files)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: Cannot write {out}: File too large; ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["samples.jsonl"]  # no temporary file left behind
