"""What the launch notebook calls: prepare a run, project its cost, launch, follow, show results.

Each function is one notebook cell's worth of work, so the notebook holds no logic. With an
empty ``run_dir`` (exploring, not part of a pipeline run) :func:`prepare_launch` builds a small
demo run in a temporary folder: a tiny base model whose tokenizer is trained on the profile's
own text, and demo-like chat samples, so launch, progress, loss curve and metrics all work on a
laptop CPU in about a minute.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from metahuman_lib._io import read_json
from metahuman_lib.errors import PipelineStepError
from metahuman_lib.samples import write_samples_jsonl
from metahuman_lib.training.backend import JobStatus, get_backend
from metahuman_lib.training.config import (
    TRAIN_CONFIG_NAME,
    TrainConfig,
    read_train_config,
    write_train_config,
)
from metahuman_lib.training.status import read_log, read_status

#: Settings of the demo run: a tiny model learns visibly within a few epochs at a high rate.
DEMO_TRAINING: dict[str, Any] = {
    "method": "lora", "lora_r": 8, "lora_alpha": 16, "learning_rate": 2e-2, "epochs": 3, "batch_size": 4,
    "grad_accum": 2, "max_seq_len": 256, "eval_train_samples": 32, "checkpoint_every_steps": 10,
    "probe_prompts": ["How are you feeling today?", "What did you do this afternoon?"], "probe_max_new_tokens": 24,
}
DEMO_SIZES = {"train": 240, "eval_recent": 30, "eval_old": 30}


@dataclass(frozen=True)
class LaunchPlan:
    """A prepared run folder and the config written into it."""

    run_dir: Path
    config: TrainConfig
    demo: bool
    note: str


def prepare_launch(run_dir: str | Path, *, username: str, root: str | Path | None, base_model: str = "",
                   overrides: dict[str, Any] | None = None, seed: int = 0, now: datetime | None = None,
                   work_dir: str | Path | None = None, demo: bool = False) -> LaunchPlan:
    """Write ``train_config.json`` for a run folder: the one given, else the profile's newest run;
    a demo run when asked (``demo``) or when the profile has no run yet.

    Args:
        run_dir: the run folder prepared by selection; empty for the profile's newest run.
        demo: build a small demo run in ``work_dir`` (a temporary folder removed when the kernel
            exits) instead of using a run of the profile.
        username, root: the profile (the demo profile is written on first use).
        base_model: a Hugging Face id or local path; empty keeps the run's (or, for a demo, builds
            the tiny model).
        overrides: keys of the ``training:`` block that replace the run's settings.
        seed: seed of the demo samples and of training.
        now: end of the demo samples' time span (default: the demo profile's end).
        work_dir: where a demo run goes (default: a new temporary folder).
    """
    overrides = dict(overrides or {})
    if not str(run_dir) and not demo:
        run_dir = newest_run(username, root) or ""
    if not str(run_dir):
        return _prepare_demo(username, root, base_model, overrides, seed, now, work_dir)
    run_dir = Path(run_dir)
    existing = read_train_config(run_dir).to_dict() if (run_dir / TRAIN_CONFIG_NAME).exists() else {}
    settings = {**existing, **overrides, **({"base_model": base_model} if base_model else {})}
    config = TrainConfig.from_dict(settings)
    write_train_config(run_dir, config)
    return LaunchPlan(run_dir, config, False, f"Run folder {run_dir} with {config.method} on {config.base_model}.")


def newest_run(username: str, root: str | Path | None) -> Path | None:
    """The profile's newest run folder that has a dataset to train on, or None."""
    from metahuman_lib.profile import Profile
    from metahuman_lib.runfolder import list_run_dirs

    runs = [run for run in list_run_dirs(Profile.open(username, str(root or "") or None))
            if (run / "dataset.jsonl").is_file()]
    return runs[-1] if runs else None


def _prepare_demo(username: str, root: str | Path | None, base_model: str, overrides: dict[str, Any],
                  seed: int, now: datetime | None, work_dir: str | Path | None) -> LaunchPlan:
    from metahuman_lib.demo import DEMO_END, resolve_profile
    from metahuman_lib.training.tiny import (
        build_tiny_model,
        demo_samples,
        profile_texts,
        sample_texts,
    )

    if work_dir:
        folder = Path(work_dir)
    else:
        folder = Path(tempfile.mkdtemp(prefix="metahuman-train-demo-"))
        atexit.register(shutil.rmtree, folder, True)  # a demo run is gone when the kernel exits
    samples = demo_samples(sum(DEMO_SIZES.values()), seed=seed, end=now or DEMO_END)
    if not base_model:
        model_dir = folder / "tiny-model"
        if not (model_dir / "config.json").exists():
            texts = profile_texts(resolve_profile(username, str(root or ""))) + sample_texts(samples)
            build_tiny_model(model_dir, texts)
        base_model = str(model_dir)
    run_dir = folder / "run"
    old, train = DEMO_SIZES["eval_old"], DEMO_SIZES["train"]
    write_samples_jsonl(samples.iloc[:old], run_dir / "eval_old.jsonl")
    write_samples_jsonl(samples.iloc[old : old + train], run_dir / "dataset.jsonl")
    write_samples_jsonl(samples.iloc[old + train :], run_dir / "eval_recent.jsonl")
    config = TrainConfig.from_dict({**DEMO_TRAINING, "seed": seed, **overrides, "base_model": base_model})
    write_train_config(run_dir, config)
    note = (f"Demo run in {run_dir} (synthetic demo samples; the tiny model's tokenizer is trained on "
            f"profile {username!r}); the folder is removed when the kernel exits. Selection writes real run folders.")
    return LaunchPlan(run_dir, config, True, note)


def training_overrides(**values: Any) -> dict[str, Any]:
    """The notebook's hyperparameters that were set (not None), as ``training:`` block keys."""
    return {key: value for key, value in values.items() if value is not None}


def run_gpus(plan: LaunchPlan, gpus: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The GPU types to plan: those given, else the run's own ``runpod.gpu_types``."""
    from metahuman_lib.training.runpod_config import RunPodConfig, run_runpod_block

    return list(gpus) or list(RunPodConfig.from_dict(run_runpod_block(plan.run_dir)).gpu_types)


def memory_plan(plan: LaunchPlan, gpus: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per GPU type: does the run fit, with which micro-batch and checkpointing, and the
    projected peak memory by part (GB); fitting ones first, cheapest first."""
    from metahuman_lib.training.planning import plan_run

    return plan_run(plan.run_dir, run_gpus(plan, gpus)).table()


def projected_cost(plan: LaunchPlan, gpus: list[str] | tuple[str, ...] = (),
                   model_params_b: float | None = None) -> pd.DataFrame:
    """One row per GPU type that fits: projected tokens, steps, GPU-hours and dollars, with the
    memory plan's checkpointing (one cost projection, the one the RunPod budget check uses)."""
    from metahuman_lib.training.cost import load_gpu_prices, project_run
    from metahuman_lib.training.planning import plan_run

    prices = load_gpu_prices()
    planned = plan_run(plan.run_dir, run_gpus(plan, gpus), prices)
    rows = [project_run(plan.run_dir, p.gpu, prices=prices, model_params_b=model_params_b,
                        gradient_checkpointing=p.shape.checkpointing).as_dict() for p in planned.plan.fitting]
    return pd.DataFrame(rows).set_index("gpu") if rows else pd.DataFrame(rows)


_RUNNERS: dict[str, Any] = {}


def _runner(backend: str, **options: Any) -> Any:
    """One backend per name for the notebook's session, so the process that launched a trainer is
    the one that waits for it (no zombie trainer left behind)."""
    if options:
        return get_backend(backend, **options)
    if backend not in _RUNNERS:
        _RUNNERS[backend] = get_backend(backend)
    return _RUNNERS[backend]


def launch(plan: LaunchPlan, backend: str = "local", **options: Any) -> JobStatus:
    """Start (or re-attach to) the trainer for the plan's run folder."""
    return _runner(backend, **options).launch(plan.run_dir)


def follow(plan: LaunchPlan, backend: str = "local", *, poll_s: float = 1.0, timeout_s: float | None = None,
           **options: Any) -> JobStatus:
    """Show a live progress widget until the run finishes, then let the backend fetch its outputs."""
    runner = _runner(backend, **options)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:  # from here on an interrupt cancels the job, even one that lands while the widget is built
        import ipywidgets as widgets
        from IPython.display import display

        bar = widgets.IntProgress(value=0, min=0, max=1, description="training")
        label = widgets.HTML()
        display(widgets.VBox([bar, label]))
        status = runner.poll(plan.run_dir)
        while not status.finished and (deadline is None or time.monotonic() < deadline):
            _show(bar, label, status)
            time.sleep(poll_s)
            status = runner.poll(plan.run_dir)
        status = runner.wait(plan.run_dir, progress=False,
                             timeout_s=max(0.0, deadline - time.monotonic()) if deadline is not None else None)
    except KeyboardInterrupt:
        # An interrupted cell stops the job and releases what it holds (a rented pod stops billing);
        # a restarted kernel, which raises nothing here, leaves the job running to re-attach to.
        runner.cancel(plan.run_dir)
        raise
    _show(bar, label, status)
    return status


def _show(bar: Any, label: Any, status: JobStatus) -> None:
    bar.max = max(status.total_steps, 1)
    bar.value = status.step
    eta = "" if status.eta_s is None else f", about {status.eta_s:.0f} s left"
    loss = status.extra.get("loss")
    label.value = (f"<b>{status.state}</b> ({status.phase}) step {status.step}/{status.total_steps}{eta}"
                   + (f", loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
                   + (f"<br>error: {status.error}" if status.error else ""))


def loss_curve(run_dir: str | Path) -> Any:
    """Plotly figure of the training loss per step, with the learning rate on a second axis."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    log = pd.DataFrame(read_log(Path(run_dir)))
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    if not log.empty:
        figure.add_trace(go.Scatter(x=log["step"], y=log["loss"], name="train loss", mode="lines+markers"))
        figure.add_trace(go.Scatter(x=log["step"], y=log["learning_rate"], name="learning rate",
                                    line={"dash": "dot"}), secondary_y=True)
    figure.update_layout(title="Training loss (assistant tokens only)", xaxis_title="optimizer step")
    figure.update_yaxes(title_text="loss", secondary_y=False)
    figure.update_yaxes(title_text="learning rate", secondary_y=True)
    return figure


def metrics_table(run_dir: str | Path) -> pd.DataFrame:
    """Before/after loss and perplexity per evaluation set (and per month of eval_old)."""
    metrics = read_json(Path(run_dir) / "metrics.json")
    rows = []
    for name in ("eval_recent", "eval_old", "train_sample"):
        rows.append(_row(name, metrics["before"][name], metrics["after"][name]))
    for month, before in metrics["before"]["eval_old"].get("by_month", {}).items():
        after = metrics["after"]["eval_old"]["by_month"].get(month, {})
        rows.append(_row(f"eval_old {month}", before, after))
    return pd.DataFrame(rows).set_index("set")


def _row(name: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    delta = None if before.get("loss") is None or after.get("loss") is None else after["loss"] - before["loss"]
    return {"set": name, "samples": before.get("samples"), "loss_before": before.get("loss"),
            "loss_after": after.get("loss"), "loss_change": delta,
            "perplexity_before": before.get("perplexity"), "perplexity_after": after.get("perplexity")}


def train_summary(run_dir: str | Path) -> pd.Series:
    """The ``train`` section of metrics.json (steps, tokens/s, padding and masked shares, ...)."""
    return pd.Series(read_json(Path(run_dir) / "metrics.json")["train"], name="train")


def require_success(run_dir: str | Path, log_lines: int = 15) -> JobStatus:
    """Raise :class:`PipelineStepError` when the run did not succeed: the trainer's own error from
    ``status.json`` and the last lines of ``trainer.log``."""
    status = read_status(Path(run_dir))
    if status.state != "succeeded":
        log = Path(run_dir) / "trainer.log"
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-log_lines:] if log.is_file() else []
        shown = ("\nLast lines of trainer.log:\n" + "\n".join(tail)) if tail else ""
        raise PipelineStepError(f"Training in {run_dir} ended {status.state} in phase {status.phase!r}: "
                                f"{status.error or 'no error recorded'}{shown}")
    return status
