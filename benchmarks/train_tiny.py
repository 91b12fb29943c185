"""Benchmark: trainer throughput and padding on the CPU, packed vs unpacked, on the tiny model.

Builds the tiny Qwen2-style model and a demo-like run folder, trains it once with packing and
once without (length-grouped batches), and prints tokens/s, padding share, masked share and the
loss before/after. Usage: ``python benchmarks/train_tiny.py [--samples 400] [--epochs 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from metahuman_lib.samples import write_samples_jsonl
from metahuman_lib.training import train
from metahuman_lib.training.config import TrainConfig, write_train_config
from metahuman_lib.training.tiny import build_tiny_model, demo_samples, sample_texts

END = datetime(2026, 11, 1, tzinfo=UTC)


def prepare(folder: Path, samples: int, epochs: float, packing: bool, model: Path) -> Path:
    """A run folder with ``samples`` training samples and small eval sets."""
    data = demo_samples(samples + 40, seed=3, end=END)
    run_dir = folder / ("packed" if packing else "unpacked")
    write_samples_jsonl(data.iloc[:20], run_dir / "eval_old.jsonl")
    write_samples_jsonl(data.iloc[20 : 20 + samples], run_dir / "dataset.jsonl")
    write_samples_jsonl(data.iloc[20 + samples :], run_dir / "eval_recent.jsonl")
    config = TrainConfig(base_model=str(model), lora_r=8, lora_alpha=16, learning_rate=2e-2, epochs=epochs,
                         batch_size=8, grad_accum=1, max_seq_len=512, packing=packing, eval_train_samples=32,
                         checkpoint_every_steps=10_000)
    write_train_config(run_dir, config)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--epochs", type=float, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_tiny_model(folder / "tiny", sample_texts(demo_samples(400, seed=7, end=END)))
        rows = []
        for packing in tqdm((True, False), desc="runs"):
            metrics = train.run(prepare(folder, args.samples, args.epochs, packing, model))
            rows.append((packing, metrics))
    print(f"\ntiny model, {args.samples} samples x {args.epochs} epochs, batch 8, CPU")
    print(f"{'mode':<10}{'steps':>6}{'tokens':>9}{'tokens/s':>10}{'padding':>9}{'masked':>8}"
          f"{'loss before':>13}{'loss after':>12}")
    for packing, metrics in rows:
        t = metrics["train"]
        print(f"{'packed' if packing else 'unpacked':<10}{t['steps']:>6}{t['tokens_seen']:>9}{t['tokens_per_s']:>10.0f}"
              f"{t['padding_share']:>9.3f}{t['masked_share']:>8.3f}"
              f"{metrics['before']['eval_recent']['loss']:>13.3f}{metrics['after']['eval_recent']['loss']:>12.3f}")


if __name__ == "__main__":
    main()
