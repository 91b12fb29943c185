"""Benchmark: trainer tokens/s and peak GPU memory on a real model, LoRA and full fine-tuning.

Needs a CUDA GPU and the model's weights (a local folder, or a Hugging Face id with internet).
Without a GPU it says so and exits 0, so ``make bench`` still runs on a laptop.
Usage: ``python benchmarks/train_gpu.py [--model Qwen/Qwen2.5-0.5B-Instruct] [--samples 512]
[--methods lora full] [--max-seq-len 1024]``.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from metahuman_lib.samples import write_samples_jsonl
from metahuman_lib.training import train
from metahuman_lib.training.config import TrainConfig, write_train_config
from metahuman_lib.training.tiny import demo_samples

END = datetime(2026, 11, 1, tzinfo=UTC)


def run_once(folder: Path, model: str, method: str, samples: int, max_seq_len: int) -> dict:
    """Train one run folder and return its train metrics plus the peak GPU memory."""
    import torch

    data = demo_samples(samples + 64, seed=5, end=END)
    run_dir = folder / method
    write_samples_jsonl(data.iloc[:32], run_dir / "eval_old.jsonl")
    write_samples_jsonl(data.iloc[32 : 32 + samples], run_dir / "dataset.jsonl")
    write_samples_jsonl(data.iloc[32 + samples :], run_dir / "eval_recent.jsonl")
    config = TrainConfig(base_model=model, method=method, epochs=1, batch_size=4, grad_accum=4,
                         max_seq_len=max_seq_len, precision="auto", eval_train_samples=32,
                         checkpoint_every_steps=10_000, learning_rate=1e-4 if method == "lora" else 1e-5)
    write_train_config(run_dir, config)
    torch.cuda.reset_peak_memory_stats()
    metrics = train.run(run_dir)
    return {**metrics["train"], "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "device": torch.cuda.get_device_name(0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--methods", nargs="+", default=["lora", "full"])
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("train_gpu: no CUDA GPU on this machine; nothing measured (see docs/performance.md).")
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = [(method, run_once(Path(tmp), args.model, method, args.samples, args.max_seq_len))
                   for method in args.methods]
    print(f"\n{args.model} on {results[0][1]['device']}, {args.samples} samples, max_seq_len {args.max_seq_len}")
    print(f"{'method':<8}{'steps':>6}{'tokens':>10}{'tokens/s':>10}{'padding':>9}{'peak GiB':>10}")
    for method, r in results:
        print(f"{method:<8}{r['steps']:>6}{r['tokens_seen']:>10}{r['tokens_per_s']:>10.0f}"
              f"{r['padding_share']:>9.3f}{r['peak_gib']:>10.2f}")


if __name__ == "__main__":
    main()
