"""benchmarks/train_gpu.py works before any GPU time is spent: the same code at toy size on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_gpu.py"


def test_the_gpu_benchmark_runs_at_toy_size_on_the_cpu():
    done = subprocess.run([sys.executable, str(SCRIPT), "--toy", "--steps", "1", "--samples", "40",
                           "--models", "qwen3.5-9b"], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("Qwen/Qwen3.5-9B ") and " x " in line for line in lines)
    assert sum("NVIDIA A100 80GB PCIe:" in line and "NVIDIA H100 80GB HBM3:" in line for line in lines) == 1
