"""The trainer: ``python -m metahuman_lib.training.train RUN_DIR``.

It reads only the run folder (``dataset.jsonl``, ``eval_recent.jsonl``, ``eval_old.jsonl``,
``train_config.json``) and writes only into it (``status.json``, ``train_log.jsonl``,
``effective_config.json``, ``metrics.json``, ``generations.jsonl``, ``output/``), so the same
command runs on a laptop, on a rented GPU, or under ``accelerate launch`` on several GPUs.

The loop is a plain torch loop driven by accelerate (DDP when launched with several processes):
seeded batches planned per epoch, gradient accumulation normalised by the number of assistant
tokens across all processes, warm-up as a ratio of the real number of steps, checkpoints of the
trainable weights + optimizer + scheduler + RNG in ``.scratch/`` (deleted on success) for resume.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from metahuman_lib import chat_formats
from metahuman_lib._io import atomic_write_bytes, atomic_write_json, read_json, sha256_tree
from metahuman_lib.errors import ConfigError
from metahuman_lib.runfolder import read_manifest, update_manifest, utc_now_iso
from metahuman_lib.training import data as tdata
from metahuman_lib.training.config import TrainConfig, read_train_config
from metahuman_lib.training.lean import enable_fast_math, lm_parts
from metahuman_lib.training.software import check_versions
from metahuman_lib.training.status import append_log, read_status, truncate_log, write_status

SCRATCH_NAME = ".scratch"
DATASET_NAME = "dataset.jsonl"
EVAL_RECENT_NAME = "eval_recent.jsonl"
EVAL_OLD_NAME = "eval_old.jsonl"
METRICS_NAME = "metrics.json"
EFFECTIVE_CONFIG_NAME = "effective_config.json"
GENERATIONS_NAME = "generations.jsonl"
PROMPT_FORMAT_NAME = "prompt_format.json"


class TrainingCancelled(Exception):
    """Raised inside the trainer when it receives SIGTERM (a cancel from a backend)."""


@dataclass
class _Progress:
    """Counters carried across a resume (saved in every checkpoint)."""

    step: int = 0
    tokens_seen: int = 0
    pad_tokens: int = 0
    slot_tokens: int = 0
    last_loss: float | None = None
    runtime_s: float = 0.0
    resumed_from: int | None = None


@dataclass(frozen=True)
class _StepResult:
    """What one optimizer step did, summed over all processes."""

    loss: float
    learning_rate: float
    tokens: int
    pad_tokens: int
    slot_tokens: int
    grad_norm: float


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSONL sample records of a run-folder file (empty when the file does not exist)."""
    if not Path(path).exists():
        return []
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def plan_steps(epoch_batches: list[int], grad_accum: int, epochs: float, max_steps: int | None) -> list[int]:
    """Optimizer steps per epoch: ``ceil(batches / grad_accum)``, the last epoch cut by a fractional
    ``epochs`` and everything capped by ``max_steps``."""
    steps = []
    for index, batches in enumerate(epoch_batches):
        per_epoch = math.ceil(batches / grad_accum)
        if index + 1 > epochs:
            per_epoch = math.ceil(per_epoch * (epochs - index))
        steps.append(per_epoch)
    if max_steps is not None:
        capped, left = [], max_steps
        for count in steps:
            capped.append(min(count, left))
            left -= capped[-1]
        steps = capped
    return steps


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Warm-up as a share of the real number of steps (never 100 steps of a 30-step run, defect 7)."""
    return min(total_steps, math.ceil(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0


def run(run_dir: Path, *, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train for a run folder and return its metrics; status.json records failures too.

    Args:
        run_dir: the prepared run folder.
        on_step: called with the global step after every optimizer step (and checkpoint); lets a
            caller stop a run between steps, which is how the resume path is exercised.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from metahuman_lib.training.modeling import resolve_precision

    run_dir = Path(run_dir).resolve()
    if read_status(run_dir).state == "succeeded":
        raise ConfigError(f"{run_dir} was already trained successfully; a finished run folder is never "
                          "trained again: prepare a new run folder.")
    try:
        config = read_train_config(run_dir)
    except ConfigError as exc:
        if os.environ.get("RANK", "0") == "0":
            write_status(run_dir, state="failed", phase="loading", error=str(exc))
        raise
    precision = resolve_precision(config.precision)
    # bf16/fp16 compute under autocast; a full fine-tune keeps fp32 master weights, so small updates
    # are not rounded away (pure bf16 weights left 94% of them unchanged after 30 steps)
    mixed = {"bf16": "bf16", "fp16": "fp16"}.get(precision, "no")
    # accelerate keeps its settings in a process-wide singleton; several runs in one process (a
    # benchmark comparing LoRA in bf16 autocast with a pure-bf16 full fine-tune) each need their own
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=mixed, cpu=_cpu_only())
    main = accelerator.is_main_process
    previous = signal.signal(signal.SIGTERM, _raise_cancelled) if main else None
    try:
        if main:
            write_status(run_dir, state="running", phase="loading", error=None, started_at=utc_now_iso())
        metrics = _run(run_dir, config, precision, accelerator, on_step)
        if main:
            write_status(run_dir, state="succeeded", phase="done", eta_s=0.0, finished_at=utc_now_iso())
        return metrics
    except TrainingCancelled:
        if main:
            write_status(run_dir, state="cancelled", phase="cancelled", eta_s=None,
                         error="cancelled (SIGTERM); resume by launching the run again")
        raise
    except BaseException as exc:
        if main:
            write_status(run_dir, state="failed", eta_s=None, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _loss_path(model: Any, config: TrainConfig, accelerator: Any) -> str:
    """Which loss path trains: ``chunked`` (or ``liger`` on a GPU with liger-kernel), else ``plain``."""
    if not config.lean_loss or accelerator.num_processes > 1 or lm_parts(accelerator.unwrap_model(model)) is None:
        return "plain"
    import importlib.util

    liger = accelerator.device.type == "cuda" and importlib.util.find_spec("liger_kernel") is not None
    return "liger" if liger else "chunked"


def _cpu_only() -> bool:
    """True without a GPU: accelerate then runs several processes as DDP over gloo (MULTI_CPU)."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return not torch.cuda.is_available() and not (mps is not None and mps.is_available())


def _raise_cancelled(_signum: int, _frame: Any) -> None:
    raise TrainingCancelled("cancelled")


def _run(run_dir: Path, config: TrainConfig, precision: str, accelerator: Any,
         on_step: Callable[[int], None] | None) -> dict[str, Any]:
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer

    from metahuman_lib.training.modeling import (
        count_parameters,
        has_linear_attention,
        load_model,
        parent_record,
    )

    main = accelerator.is_main_process
    software = (read_manifest(run_dir).get("training") or {}).get("software")
    if software:
        check_versions(software)
    set_seed(config.seed)
    parent = parent_record(config, run_dir)
    # the parent's own tokenizer (and template) when it shipped one, so training matches its inference
    has_tokenizer = parent is not None and (Path(parent["path"]) / "tokenizer_config.json").exists()
    tokenizer_source = parent["path"] if has_tokenizer else config.base_model
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    template_source = tdata.ensure_chat_template(tokenizer)
    fmt = chat_formats.detect(tokenizer.chat_template, where=tokenizer_source)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    _status(main, run_dir, phase="tokenizing")
    sets, train_records = _tokenize_sets(run_dir, tokenizer, config, fmt)
    if main:
        atomic_write_json(run_dir / PROMPT_FORMAT_NAME,
                          tdata.prompt_format(tokenizer, train_records, fmt, config.system_prompt))
    train_examples, train_stats = sets["train"]
    train_probe = random.Random(config.seed).sample(train_examples,
                                                    min(config.eval_train_samples, len(train_examples)))

    _status(main, run_dir, phase="loading_model")
    fast_math = enable_fast_math()
    model, loaded = load_model(config, precision, parent)
    model.to(accelerator.device)
    trainable, total_params = count_parameters(model)
    if config.packing and has_linear_attention(model):
        # recurrent linear-attention layers carry state across packed neighbours: one sample a row
        config = config.replace(packing=False)
        loaded["packing"] = "off: the model has linear-attention layers, which packing would leak across samples"

    epoch_plans = [tdata.plan_epoch(train_examples, batch_size=config.batch_size, max_seq_len=config.max_seq_len,
                                    packing=config.packing, seed=config.seed, epoch=epoch)
                   for epoch in range(math.ceil(config.epochs))]
    epoch_plans = [tdata.shard_batches(plan, accelerator.process_index, accelerator.num_processes)
                   for plan in epoch_plans]
    steps_per_epoch = plan_steps([len(plan) for plan in epoch_plans], config.grad_accum, config.epochs,
                                 config.max_steps)
    total_steps = sum(steps_per_epoch)
    warmup = warmup_steps(total_steps, config.warmup_ratio)

    scratch = run_dir / SCRATCH_NAME
    before = _before(run_dir, scratch, config, model, tokenizer, sets, train_probe, pad_id, accelerator, fmt)

    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config, warmup, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    progress = _Progress()
    checkpoint = _latest_checkpoint(scratch)
    if checkpoint is not None:
        progress = _load_checkpoint(checkpoint, accelerator, model, optimizer, scheduler)
        if main:
            truncate_log(run_dir, progress.step)
    elif main:
        (run_dir / "train_log.jsonl").unlink(missing_ok=True)

    effective = _effective_config(config, precision, accelerator, template_source, loaded, model, trainable,
                                  total_params, warmup, total_steps, steps_per_epoch, progress)
    effective["chat_format"] = fmt.record()
    effective["lean"] = {"loss": _loss_path(model, config, accelerator), **fast_math,
                         "attention": getattr(getattr(accelerator.unwrap_model(model), "config", None),
                                              "_attn_implementation", None),
                         "gradient_checkpointing": config.gradient_checkpointing}
    if main:
        atomic_write_json(run_dir / EFFECTIVE_CONFIG_NAME, effective)
    _status(main, run_dir, phase="training", step=progress.step, total_steps=total_steps)
    _train_loop(run_dir, config, accelerator, model, optimizer, scheduler, epoch_plans, steps_per_epoch,
                pad_id, progress, scratch, on_step)

    _status(main, run_dir, phase="eval_after", eta_s=None)
    unwrapped = accelerator.unwrap_model(model)
    after = _evaluate(config, unwrapped, sets, train_probe, pad_id, accelerator)
    generations_after = _probes(config, unwrapped, tokenizer, accelerator, fmt)

    metrics = _metrics(config, before, after, progress, train_stats, steps_per_epoch)
    if main:
        _finish(run_dir, config, unwrapped, tokenizer, metrics, before, generations_after, loaded, effective)
    accelerator.wait_for_everyone()
    return metrics


def _tokenize_sets(run_dir: Path, tokenizer: Any, config: TrainConfig,
                   fmt: chat_formats.ChatFormat) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Examples and counts of the train set and both eval sets, and the train records; an empty
    train set is an error."""
    records = {name: read_records(run_dir / file) for name, file in
               (("train", DATASET_NAME), ("eval_recent", EVAL_RECENT_NAME), ("eval_old", EVAL_OLD_NAME))}
    if not records["train"]:
        raise ConfigError(f"{run_dir / DATASET_NAME} is missing or empty: run selection first.")
    sets = {name: tdata.tokenize_records(tokenizer, rows, config.max_seq_len, config.system_prompt, fmt)
            for name, rows in records.items()}
    examples, stats = sets["train"]
    if not examples:
        raise ConfigError(f"No trainable sample in {run_dir / DATASET_NAME}: {stats.dropped}")
    return sets, records["train"]


def _finish(run_dir: Path, config: TrainConfig, model: Any, tokenizer: Any, metrics: dict[str, Any],
            before: dict[str, Any], generations_after: list[str] | None, loaded: dict[str, Any],
            effective: dict[str, Any]) -> None:
    """Main process: write generations, the output folder, metrics and the manifest; drop scratch."""
    write_status(run_dir, phase="saving")
    _write_generations(run_dir, config, before.get("generations"), generations_after)
    output = _save(model, tokenizer, run_dir, config.method)
    atomic_write_json(run_dir / METRICS_NAME, metrics)
    _record_manifest(run_dir, output, loaded, effective)
    shutil.rmtree(run_dir / SCRATCH_NAME, ignore_errors=True)


def _status(main: bool, run_dir: Path, **fields: Any) -> None:
    if main:
        write_status(run_dir, **fields)


def _evaluate(config: TrainConfig, model: Any, sets: dict[str, Any], train_probe: list[Any], pad_id: int,
              accelerator: Any) -> dict[str, Any]:
    from metahuman_lib.training.scoring import score_examples, summarize

    def score(examples: list[Any]) -> list[tuple[float, int, str]]:
        return score_examples(model, examples, batch_size=config.eval_batch_size, pad_id=pad_id,
                              accelerator=accelerator)

    return {"eval_recent": summarize(score(sets["eval_recent"][0])),
            "eval_old": summarize(score(sets["eval_old"][0]), by_month=True),
            "train_sample": summarize(score(train_probe))}


def _probes(config: TrainConfig, model: Any, tokenizer: Any, accelerator: Any,
            fmt: chat_formats.ChatFormat) -> list[str] | None:
    from metahuman_lib.training.scoring import generate_answers

    if not config.probe_prompts or not accelerator.is_main_process:
        return None
    return generate_answers(model, tokenizer, config.probe_prompts, system_prompt=config.system_prompt,
                            max_new_tokens=config.probe_max_new_tokens, device=accelerator.device, fmt=fmt)


def _before(run_dir: Path, scratch: Path, config: TrainConfig, model: Any, tokenizer: Any,
            sets: dict[str, Any], train_probe: list[Any], pad_id: int, accelerator: Any,
            fmt: chat_formats.ChatFormat) -> dict[str, Any]:
    """Scores of the starting model; kept in scratch so a resumed run reports the true 'before'."""
    path = scratch / "before.json"
    if path.exists():
        return read_json(path)
    _status(accelerator.is_main_process, run_dir, phase="eval_before")
    before = _evaluate(config, model, sets, train_probe, pad_id, accelerator)
    before["generations"] = _probes(config, model, tokenizer, accelerator, fmt)
    if accelerator.is_main_process:
        atomic_write_json(path, before)
    accelerator.wait_for_everyone()
    return before


def _optimizer(model: Any, config: TrainConfig) -> Any:
    """AdamW (no decay on biases and norms) or Adafactor with a fixed learning rate."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [group for group in groups if group["params"]]
    lr = config.resolved_learning_rate
    if config.resolved_optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def _scheduler(optimizer: Any, config: TrainConfig, warmup: int, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = "constant_with_warmup" if config.lr_scheduler == "constant" else config.lr_scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1))


def _train_loop(run_dir: Path, config: TrainConfig, accelerator: Any, model: Any, optimizer: Any,
                scheduler: Any, epoch_plans: list[list[list[tdata.Row]]], steps_per_epoch: list[int],
                pad_id: int, progress: _Progress, scratch: Path, on_step: Callable[[int], None] | None) -> None:
    total_steps = sum(steps_per_epoch)
    session_start, session_steps = time.perf_counter(), 0
    step_offsets = [sum(steps_per_epoch[:i]) for i in range(len(steps_per_epoch))]
    model.train()
    for epoch, plan in enumerate(epoch_plans):
        first = step_offsets[epoch]
        for local_step in range(steps_per_epoch[epoch]):
            if first + local_step < progress.step:
                continue
            group = plan[local_step * config.grad_accum : (local_step + 1) * config.grad_accum]
            started = time.perf_counter()
            result = _optimizer_step(config, accelerator, model, optimizer, scheduler, group, pad_id)
            loss, tokens = result.loss, result.tokens
            elapsed = time.perf_counter() - started
            progress.step += 1
            session_steps += 1
            progress.tokens_seen += tokens
            progress.pad_tokens += result.pad_tokens
            progress.slot_tokens += result.slot_tokens
            progress.last_loss = loss
            progress.runtime_s += elapsed
            eta = (time.perf_counter() - session_start) / session_steps * (total_steps - progress.step)
            if accelerator.is_main_process:
                if progress.step % config.logging_steps == 0 or progress.step == total_steps:
                    append_log(run_dir, {"step": progress.step, "epoch": round(epoch + (local_step + 1)
                                                                               / steps_per_epoch[epoch], 4),
                                         "loss": round(loss, 6), "learning_rate": result.learning_rate,
                                         "grad_norm": result.grad_norm, "tokens": tokens,
                                         "tokens_per_s": round(tokens / elapsed, 2) if elapsed else None,
                                         "elapsed_s": round(progress.runtime_s, 3)})
                write_status(run_dir, step=progress.step, total_steps=total_steps, eta_s=round(eta, 1),
                             loss=round(loss, 6), epoch=epoch + 1)
            if progress.step % config.checkpoint_every_steps == 0 and progress.step < total_steps:
                _save_checkpoint(scratch, accelerator, model, optimizer, scheduler, progress)
            if on_step is not None:
                on_step(progress.step)


def _optimizer_step(config: TrainConfig, accelerator: Any, model: Any, optimizer: Any, scheduler: Any,
                    group: list[list[tdata.Row]], pad_id: int) -> _StepResult:
    """One optimizer step over up to ``grad_accum`` micro-batches.

    Each micro-batch's summed loss is divided by the number of assistant tokens of the whole step
    on all processes (times the world size, as DDP averages gradients), so every assistant token
    weighs the same however the tokens fall into micro-batches and processes.
    """
    import torch

    from metahuman_lib.training.lean import loss_sum

    batches = [tdata.collate(rows, pad_id, config.packing) for rows in group]
    local_tokens = sum(int((b["labels"][:, 1:] != tdata.IGNORE_INDEX).sum()) for b in batches)
    global_tokens = int(accelerator.reduce(torch.tensor(local_tokens, device=accelerator.device), "sum"))
    loss_total = torch.zeros((), device=accelerator.device)
    for index, batch in enumerate(batches):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        sync = index == len(batches) - 1
        context = contextlib.nullcontext() if sync or accelerator.num_processes == 1 else accelerator.no_sync(model)
        with context:
            with accelerator.autocast():
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                summed, _path = loss_sum(model, inputs, batch["labels"],
                                         lean=config.lean_loss and accelerator.num_processes == 1)
            loss = summed / max(global_tokens, 1) * accelerator.num_processes
            accelerator.backward(loss)
        loss_total += summed.detach()
    learning_rate = scheduler.get_last_lr()[0]
    grad_norm = accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                            config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    mean_loss = float(accelerator.reduce(loss_total, "sum")) / max(global_tokens, 1)
    pads = slots = real = 0
    for rows in group:
        pad, slot = tdata.padding_counts(rows)
        pads, slots, real = pads + pad, slots + slot, real + slot - pad
    counts = accelerator.reduce(torch.tensor([real, pads, slots], device=accelerator.device), "sum").tolist()
    return _StepResult(mean_loss, learning_rate, int(counts[0]), int(counts[1]), int(counts[2]),
                       round(float(grad_norm), 6))


def _trainable_state(model: Any) -> dict[str, Any]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(scratch: Path, accelerator: Any, model: Any, optimizer: Any, scheduler: Any,
                     progress: _Progress) -> None:
    """Trainable weights, optimizer, scheduler, RNG and counters; only the latest is kept."""
    import numpy as np
    import torch

    target = scratch / "checkpoints" / f"step-{progress.step:07d}"
    target.mkdir(parents=True, exist_ok=True)
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save(rng, target / f"rng-{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        torch.save({"model": _trainable_state(unwrapped), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict()}, target / "state.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(target / "progress.json", progress.__dict__)
        for old in (scratch / "checkpoints").iterdir():
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _latest_checkpoint(scratch: Path) -> Path | None:
    """The newest complete checkpoint (one with ``progress.json``), or None."""
    folder = scratch / "checkpoints"
    if not folder.is_dir():
        return None
    complete = sorted(p for p in folder.iterdir() if (p / "progress.json").exists())
    return complete[-1] if complete else None


def _load_checkpoint(path: Path, accelerator: Any, model: Any, optimizer: Any, scheduler: Any) -> _Progress:
    import torch

    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    unwrapped = accelerator.unwrap_model(model)
    params = dict(unwrapped.named_parameters())
    with torch.no_grad():
        for name, value in state["model"].items():
            params[name].copy_(value.to(params[name].device))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_file = path / f"rng-{accelerator.process_index}.pt"
    if rng_file.exists():
        import numpy as np

        rng = torch.load(rng_file, weights_only=False)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
    progress = _Progress(**read_json(path / "progress.json"))
    progress.resumed_from = progress.step
    return progress


def _effective_config(config: TrainConfig, precision: str, accelerator: Any, template_source: str,
                      loaded: dict[str, Any], model: Any, trainable: int, total_params: int, warmup: int,
                      total_steps: int, steps_per_epoch: list[int], progress: _Progress) -> dict[str, Any]:
    """What the trainer really uses, written fresh for every run (never a cached file)."""
    import accelerate
    import peft
    import torch
    import transformers

    from metahuman_lib.training.modeling import lora_settings

    device = accelerator.device
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "written_at": utc_now_iso(),
        "method": config.method,
        "optimizer": config.resolved_optimizer,
        "learning_rate": config.resolved_learning_rate,
        "lr_scheduler": config.lr_scheduler,
        "warmup_ratio": config.warmup_ratio,
        "warmup_steps": warmup,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "grad_accum": config.grad_accum,
        "max_seq_len": config.max_seq_len,
        "packing": config.packing,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "precision": precision,
        "mixed_precision": accelerator.mixed_precision,
        "seed": config.seed,
        "chat_template": template_source,
        "lora": lora_settings(accelerator.unwrap_model(model)),
        "trainable_parameters": trainable,
        "total_parameters": total_params,
        "loaded": loaded,
        "resumed_from_step": progress.resumed_from,
        "devices": {"num_processes": accelerator.num_processes,
                    "distributed_type": str(accelerator.distributed_type).split(".")[-1],
                    "device": str(device), "device_name": device_name},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "accelerate": accelerate.__version__,
                     "python": sys.version.split()[0]},
    }


def _metrics(config: TrainConfig, before: dict[str, Any], after: dict[str, Any], progress: _Progress,
             train_stats: tdata.TokenizeStats, steps_per_epoch: list[int]) -> dict[str, Any]:
    before = {key: value for key, value in before.items() if key != "generations"}
    runtime = progress.runtime_s
    return {
        "before": before,
        "after": after,
        "train": {
            "steps": progress.step,
            "epochs": config.epochs,
            "tokens_seen": progress.tokens_seen,
            "runtime_s": round(runtime, 3),
            "tokens_per_s": round(progress.tokens_seen / runtime, 2) if runtime else None,
            "final_train_loss": None if progress.last_loss is None else round(progress.last_loss, 6),
            "padding_share": round(progress.pad_tokens / progress.slot_tokens, 6) if progress.slot_tokens else 0.0,
            "truncated_samples": train_stats.truncated_samples,
            "masked_share": train_stats.masked_share,
            "train_samples": train_stats.samples,
            "dropped_samples": dict(train_stats.dropped),
            "resumed_from_step": progress.resumed_from,
        },
        "generations": GENERATIONS_NAME if config.probe_prompts else None,
    }


def _write_generations(run_dir: Path, config: TrainConfig, before: list[str] | None,
                       after: list[str] | None) -> None:
    if not config.probe_prompts:
        return
    lines = [orjson.dumps({"prompt": prompt, "before": b, "after": a})
             for prompt, b, a in zip(config.probe_prompts, before or [], after or [])]
    atomic_write_bytes(run_dir / GENERATIONS_NAME, b"".join(line + b"\n" for line in lines))


def _save(model: Any, tokenizer: Any, run_dir: Path, method: str) -> Path:
    from metahuman_lib.training.modeling import save_output

    output_root = run_dir / "output"
    shutil.rmtree(output_root, ignore_errors=True)
    return save_output(model, tokenizer, run_dir, method)


def _record_manifest(run_dir: Path, output: Path, loaded: dict[str, Any], effective: dict[str, Any]) -> None:
    from metahuman_lib.training.modeling import weights_sha256

    entry = {"state": "succeeded", "finished_at": utc_now_iso(),
             "output": output.relative_to(run_dir).as_posix(), "output_sha256": sha256_tree(output),
             "output_weights_sha256": weights_sha256(output), "loaded": loaded,
             "method": effective["method"], "devices": effective["devices"]}

    def change(manifest: dict[str, Any]) -> None:
        # Update, never replace: backends and the launch step keep their own keys here
        # (estimate, RunPod pod record, actual cost).
        manifest.setdefault("training", {}).update(entry)

    update_manifest(run_dir, change)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m metahuman_lib.training.train RUN_DIR``; exit 0 on success."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m metahuman_lib.training.train RUN_DIR", file=sys.stderr)
        return 2
    try:
        run(Path(args[0]))
    except TrainingCancelled:
        print("training cancelled", file=sys.stderr)
        return 130
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
