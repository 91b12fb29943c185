"""Benchmark: a monthly-sized LoRA job on real-size Qwen3-8B, Qwen3-14B and Qwen3.5-9B (random weights).

Built for a lent GPU machine without internet: each model is built from its architecture facts
(:data:`metahuman_lib.training.memory_plan.ARCHITECTURES`) with random bf16 weights, saved, and
trained by the real trainer (``train.run``) for a fixed number of optimizer steps on 4,500 samples
with the demo profile's length mix, packed to 2,048 tokens, with the micro-batch and checkpointing
the memory planner picks for this GPU. It prints tokens/s, model FLOPs utilisation, the measured
peak memory against the planner's estimate, and projects a whole monthly run (3 epochs) on an
A100 80GB and an H100 80GB in minutes and dollars (prices: ``parameters/gpu_prices.yaml``).

``--toy`` runs the same code at toy size on the CPU (the test suite does), so the script is known
to work before any GPU time is spent.

Usage: ``python benchmarks/train_gpu.py [--models qwen3-8b qwen3-14b qwen3.5-9b] [--steps 12]``
or ``python benchmarks/train_gpu.py --toy``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from metahuman_lib.samples import write_samples_jsonl
from metahuman_lib.training import train
from metahuman_lib.training.config import TrainConfig, write_train_config
from metahuman_lib.training.cost import FLOPS_PER_TOKEN, load_gpu_prices
from metahuman_lib.training.memory_plan import (
    GB,
    TrainShape,
    architecture_of,
    estimate_memory,
    plan_gpu,
)

MODELS = {"qwen3-8b": ("Qwen/Qwen3-8B", "qwen3"), "qwen3-14b": ("Qwen/Qwen3-14B", "qwen3"),
          "qwen3.5-9b": ("Qwen/Qwen3.5-9B", "qwen3.5")}
TARGETS = ("NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3")
MONTHLY_SAMPLES, EPOCHS, SEQ_LEN, EFFECTIVE_BATCH = 4500, 3, 2048, 16


def demo_length_mix(count: int, seed: int = 0) -> list:
    """``count`` samples drawn (seeded, with replacement) from the curated demo profile: its length mix."""
    from metahuman_lib.curation import load_and_curate
    from metahuman_lib.demo import write_demo_profile

    with tempfile.TemporaryDirectory() as root:
        profile = write_demo_profile(root, memories=1500, months=6, seed=seed)
        _memories, _report, result = load_and_curate(profile)
    samples = result.samples
    rows = random.Random(seed).choices(range(len(samples)), k=count)
    return samples.iloc[rows].reset_index(drop=True)


def build_model(key: str, folder: Path, toy: bool) -> str:
    """Save a random-weight model of ``key``'s real architecture (toy: tiny dims) with a family tokenizer."""
    import torch
    import transformers

    from metahuman_lib.training.tiny_families import FAMILIES, build_family_model

    hub_id, family = MODELS[key]
    arch = architecture_of(hub_id, fetch=False)
    texts = ["How was your day? I went for a walk and cooked dinner."] * 50
    build_family_model(family, folder, texts)  # the tokenizer and chat template of the family
    if toy:
        return str(folder)
    spec = FAMILIES[family]
    config_class = getattr(transformers, spec.config_class)
    settings = {"vocab_size": arch.vocab, "hidden_size": arch.hidden, "intermediate_size": arch.intermediate,
                "num_hidden_layers": arch.layers, "num_attention_heads": arch.heads,
                "num_key_value_heads": arch.kv_heads, "head_dim": arch.head_dim, "max_position_embeddings": 32768,
                "tie_word_embeddings": arch.tied_embeddings}
    saved = transformers.AutoConfig.from_pretrained(folder)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        settings[name] = getattr(saved, name, None)
    config = config_class(**settings)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return str(folder)


def run_one(key: str, work: Path, samples, steps: int, toy: bool, gpu_name: str, gpu_memory_gb: float) -> dict:
    import torch

    folder = work / key
    started = time.perf_counter()
    base = build_model(key, folder / "base", toy)
    built_s = time.perf_counter() - started
    run_dir = folder / "run"
    run_dir.mkdir(parents=True)
    write_samples_jsonl(samples, run_dir / "dataset.jsonl")
    write_samples_jsonl(samples.iloc[:16], run_dir / "eval_recent.jsonl")
    write_samples_jsonl(samples.iloc[16:32], run_dir / "eval_old.jsonl")
    arch = architecture_of(base if toy else MODELS[key][0], fetch=False)
    shape = TrainShape(method="lora", seq_len=SEQ_LEN, micro_batch=EFFECTIVE_BATCH, grad_accum=1)
    plan = plan_gpu(arch, shape, gpu_name, gpu_memory_gb) if not toy else None
    chosen = plan.shape if plan is not None and plan.fits else replace(shape, micro_batch=2, grad_accum=8)
    config = TrainConfig(base_model=base, method="lora", lora_r=16, lora_alpha=32, max_seq_len=SEQ_LEN,
                         batch_size=chosen.micro_batch, grad_accum=chosen.grad_accum,
                         gradient_checkpointing=chosen.checkpointing, max_steps=steps, epochs=1,
                         eval_train_samples=0, eval_batch_size=8, checkpoint_every_steps=10_000,
                         precision="auto", learning_rate=1e-4)
    write_train_config(run_dir, config)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    metrics = train.run(run_dir)["train"]
    peak = torch.cuda.max_memory_allocated() / GB if torch.cuda.is_available() else None
    estimate = estimate_memory(arch, chosen).total / GB
    shutil.rmtree(folder, ignore_errors=True)
    return {"model": MODELS[key][0], "params_b": arch.params / 1e9, "built_s": built_s, "shape": chosen,
            "tokens_per_s": metrics["tokens_per_s"] or 0.0, "steps": metrics["steps"], "peak_gb": peak,
            "planned_gb": estimate, "arch": arch}


def project_month(result: dict, prices, measured_tflops: float | None, tokens_per_month: int) -> dict:
    """Minutes and dollars of a whole monthly run on each target GPU, scaled from the measured speed."""
    out = {}
    for target in TARGETS:
        card = prices.gpus[target]
        speed = result["tokens_per_s"] * (card.bf16_tflops / measured_tflops if measured_tflops else 1.0)
        minutes = tokens_per_month * EPOCHS / speed / 60 if speed else float("inf")
        out[target] = (minutes, minutes / 60 * card.price_per_hour)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--samples", type=int, default=MONTHLY_SAMPLES)
    parser.add_argument("--toy", action="store_true", help="Tiny models on the CPU (checks the script).")
    args = parser.parse_args(argv)
    import torch

    if not args.toy and not torch.cuda.is_available():
        print("train_gpu: no CUDA GPU here; run with --toy to check the script on the CPU.")
        return 0
    prices = load_gpu_prices()
    gpu_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    gpu_memory = torch.cuda.get_device_properties(0).total_memory / GB if torch.cuda.is_available() else 0.0
    card = next((c for name, c in prices.gpus.items() if name.lower() in gpu_name.lower()
                 or gpu_name.lower() in name.lower()), None)
    measured_tflops = card.bf16_tflops if card and torch.cuda.is_available() else None
    samples = demo_length_mix(args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        from metahuman_lib.training.cost import estimate_tokens
        from metahuman_lib.training.train import read_records

        write_samples_jsonl(samples, Path(tmp) / "all.jsonl")
        tokens_per_month, _ = estimate_tokens(read_records(Path(tmp) / "all.jsonl"))
        results = [run_one(key, Path(tmp), samples, args.steps, args.toy, gpu_name, gpu_memory)
                   for key in args.models]
    print(f"\nLoRA r16, {args.samples} samples (demo length mix, ~{tokens_per_month:,} tokens), packed to {SEQ_LEN}, "
          f"{args.steps} optimizer steps on {gpu_name}{' (toy sizes)' if args.toy else ''}")
    print(f"{'model':<18}{'micro x acc':>12}{'ckpt':>6}{'tokens/s':>11}{'MFU':>7}{'peak GB':>9}{'plan GB':>9}"
          f"{'plan/peak':>10}")
    for r in results:
        flops = FLOPS_PER_TOKEN["lora"] + (2.0 if r["shape"].checkpointing else 0.0)
        mfu = (r["tokens_per_s"] * flops * r["arch"].params / (measured_tflops * 1e12)) if measured_tflops else None
        peak = f"{r['peak_gb']:.1f}" if r["peak_gb"] else "n/a"
        ratio = f"{r['planned_gb'] / r['peak_gb']:.2f}" if r["peak_gb"] else "n/a"
        print(f"{r['model']:<18}{r['shape'].micro_batch:>6} x {r['shape'].grad_accum:<3}"
              f"{'on' if r['shape'].checkpointing else 'off':>6}{r['tokens_per_s']:>11.0f}"
              f"{(f'{mfu:.0%}' if mfu is not None else 'n/a'):>7}{peak:>9}{r['planned_gb']:>9.1f}{ratio:>10}")
    print(f"\nWhole monthly run ({EPOCHS} epochs of ~{tokens_per_month:,} tokens), scaled by bf16 peak:")
    for r in results:
        projection = project_month(r, prices, measured_tflops, tokens_per_month)
        cells = "; ".join(f"{gpu}: {minutes:.1f} min, ${dollars:.2f}" for gpu, (minutes, dollars) in projection.items())
        print(f"  {r['model']:<18}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
