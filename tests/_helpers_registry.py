"""Well-formed fake run folders for registry, evaluation, Ollama and notebook tests.

A run folder here has every file the trainer and selection write (docs/architecture.md), with
tiny contents: a real safetensors file of 4 floats, and sha256 entries in the manifest.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from metahuman_lib.profile import Profile, make_run_label
from metahuman_lib.runfolder import record_files, update_manifest

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def safetensors_bytes(values: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)) -> bytes:
    """A valid safetensors file holding one float32 tensor."""
    header = orjson.dumps({"w": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, 4 * len(values)]}})
    return struct.pack("<Q", len(header)) + header + struct.pack(f"<{len(values)}f", *values)


def metrics(recent: tuple[float, float] = (2.3, 2.0), old: tuple[float, float] = (2.2, 2.21),
            months: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """A metrics.json in the trainer's schema: (before, after) losses per set."""
    months = months if months is not None else {"2025-07": (2.1, 2.12), "2025-08": (2.3, 2.31)}

    def side(i: int) -> dict[str, Any]:
        return {
            "eval_recent": {"loss": recent[i], "perplexity": 2.718 ** recent[i], "tokens": 512, "samples": 4},
            "eval_old": {"loss": old[i], "perplexity": 2.718 ** old[i], "tokens": 800, "samples": 6,
                         "by_month": {m: {"loss": v[i], "perplexity": 2.718 ** v[i], "tokens": 100, "samples": 3}
                                      for m, v in months.items()}},
            "train_sample": {"loss": 2.4 - i * 0.5, "perplexity": 11.0, "tokens": 400, "samples": 3},
        }

    return {"before": side(0), "after": side(1),
            "train": {"steps": 6, "epochs": 1, "tokens_seen": 3000, "runtime_s": 2.0, "tokens_per_s": 1500.0,
                      "final_train_loss": 1.9, "padding_share": 0.0, "truncated_samples": 0, "masked_share": 0.6},
            "generations": "generations.jsonl"}


def _sample(text: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "You are Tester."},
                         {"role": "user", "content": text}, {"role": "assistant", "content": answer}],
            "metadata": {"sample_id": text[:8], "memory_id": text[:8], "type": "conversation",
                         "mode": "emulation", "mode_source": "type", "timestamp": "2025-12-01T00:00:00.000Z"}}


def make_run(profile: Profile, index: int, *, parent_version: int | None = None, method: str = "lora",
             run_metrics: dict[str, Any] | None = None, state: str = "succeeded",
             base_model: str = "tiny/base-model", generations: bool = True,
             evaluation: dict[str, Any] | None = None, loaded_parent: Any = "auto") -> Path:
    """Write run folder number ``index`` of ``profile`` and return it (label from T0 + index hours)."""
    label = make_run_label(T0 + timedelta(hours=index), f"{index:06x}")
    run_dir = profile.run_dir(label)
    kind = "adapter" if method == "lora" else "model"
    output = run_dir / "output" / kind
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{kind}_model.safetensors").write_bytes(safetensors_bytes((0.1 * index, 0.2, 0.3, 0.4)))
    write_json(output / ("adapter_config.json" if kind == "adapter" else "config.json"),
               {"base_model_name_or_path": base_model, "r": 4})
    write_jsonl(run_dir / "dataset.jsonl", [_sample(f"q{i}", "a short answer") for i in range(5)])
    write_jsonl(run_dir / "eval_recent.jsonl", [_sample(f"r{i}", "I went hiking and it was great fun")
                                                for i in range(3)])
    write_jsonl(run_dir / "eval_old.jsonl", [_sample(f"o{i}", "old answer") for i in range(2)])
    write_json(run_dir / "train_config.json", {"base_model": base_model, "parent_version": parent_version,
                                               "method": method, "seed": 0})
    if loaded_parent == "auto":
        loaded_parent = None if parent_version is None else {
            "version": parent_version, "kind": kind, "path": "parent/output", "tree_sha256": None}
    write_json(run_dir / "effective_config.json", {
        "base_model_sha256": "ab" * 32, "method": method, "optimizer": "adamw",
        "loaded": {"base_model": base_model, "weights_from": base_model, "dtype": "float32",
                   "parent": loaded_parent}})
    write_json(run_dir / "status.json", {"state": state, "phase": "done", "step": 6, "total_steps": 6,
                                         "finished_at": (T0 + timedelta(hours=index, minutes=5)).isoformat()})
    write_json(run_dir / "metrics.json", run_metrics if run_metrics is not None else metrics())
    write_jsonl(run_dir / "train_log.jsonl", [{"step": s, "loss": 2.4 - 0.1 * s, "learning_rate": 1e-4,
                                               "tokens_per_s": 1500.0} for s in range(1, 7)])
    if generations:
        write_jsonl(run_dir / "generations.jsonl", [
            {"prompt": f"r{i}", "reference": "I went hiking and it was great fun",
             "before": "Certainly! As an AI I cannot hike.", "after": "I went hiking, it was fun"}
            for i in range(3)])
    files = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                   if p.is_file() and p.name != "manifest.json")
    record_files(run_dir, files)
    if evaluation is not None:
        update_manifest(run_dir, lambda m: m.__setitem__("evaluation", evaluation))
    return run_dir


METAHUMAN_OS_REGISTRY = {
    "original_base_model": "Qwen/Qwen3-14B",
    "current_base_model": "profiles/greggles/out/fine-tuned-models/2025-12-03/2025-12-03-182930-b19860/model",
    "model_type": "local",
    "training_history": [
        {"version": 1, "run_id": "b198604f1c2a9e07", "run_label": "2025-12-03-182930-b19860",
         "timestamp": "2025-12-03T18:29:30.000Z", "base_model_used": "Qwen/Qwen3-14B",
         "output_model_path": "profiles/greggles/out/fine-tuned-models/2025-12-03/2025-12-03-182930-b19860/model",
         "gguf_path": "profiles/greggles/out/fine-tuned-models/2025-12-03/2025-12-03-182930-b19860/model.gguf",
         "samples_trained": 332, "mode_filter": "dual", "training_success": True}],
    "versioning": {"enabled": True, "auto_update_base": True, "keep_all_versions": True},
}
