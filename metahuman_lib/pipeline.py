"""The monthly run end to end: execute the step notebooks with papermill into one run folder.

A run executes ``01_quality_review``, ``02_curation``, ``03_training_launch``, ``04_evaluation``
and ``05_registry`` in order, each with the same resolved parameters, into
``<run_dir>/notebooks/``. Every step's status, inputs, outputs, timestamps and error go into the
manifest's ``steps`` section, and the run as a whole into its ``cycle`` section, so:

* the run stops at the first failing step (a notebook whose gate fails raises
  :class:`~metahuman_lib.errors.PipelineStepError`) and the reason is kept in words;
* a failed or interrupted run resumes from the failed step with the parameters it started with
  (``metahuman fine-tune-cycle --resume RUN_DIR``, or automatically when the same run is asked
  for again);
* ``dry_run`` executes everything but training, and marks evaluation and registry as skipped.

Only one run per profile at a time: the profile's run lock (``registry.run_lock``) is held for
the whole run.
"""

from __future__ import annotations

import ast
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from metahuman_lib._io import atomic_write_bytes, atomic_write_json, sha256_file, storage_error
from metahuman_lib.errors import ConfigError, GateRefused, PipelineStepError, WorkbenchError
from metahuman_lib.parameters import RunParameters, parse_now, plain_data
from metahuman_lib.profile import Profile, make_run_label
from metahuman_lib.registry import run_lock
from metahuman_lib.runfolder import list_run_dirs, read_manifest, update_manifest, utc_now_iso

NOTEBOOKS_ENV_VAR = "METAHUMAN_NOTEBOOKS"
PARAMETERS_FILE = "parameters.json"
PARAMETER_SET_DIR = "parameters"
REQUIRED_NOTEBOOK_PARAMETERS = ("username", "root", "run_dir")
_UNTRACKED = {"manifest.json", ".manifest.lock", PARAMETERS_FILE, "report.html"}
_UNTRACKED_DIRS = {"notebooks", "reports", PARAMETER_SET_DIR}
FINISHED_STATES = {"succeeded", "skipped"}


@dataclass(frozen=True)
class Step:
    """One notebook of a run.

    Attributes:
        name: the notebook's stem, also the step's key in the manifest.
        title: what the step does, in words, for reports.
        trains: launches training (run with ``dry_run`` so it prepares but does not train).
        needs_model: reads the trained model (skipped in a dry run).
    """

    name: str
    title: str
    trains: bool = False
    needs_model: bool = False


STEPS: tuple[Step, ...] = (
    Step("01_quality_review", "Quality review"),
    Step("02_curation", "Sample selection"),
    Step("03_training_launch", "Training", trains=True),
    Step("04_evaluation", "Evaluation and promotion gate", needs_model=True),
    Step("05_registry", "Model registry", needs_model=True),
)


@dataclass(frozen=True)
class PipelineParams:
    """The ``pipeline`` block of a parameter set: where the notebooks are and how long they may run.

    Attributes:
        notebooks_dir: folder of the step notebooks ('' = ``$METAHUMAN_NOTEBOOKS`` or the
            ``notebooks/`` folder shipped beside the package).
        cell_timeout_s: the longest one cell of a step may run (papermill's execution timeout).
        training_cell_timeout_s: the same for the training step, whose launch cell waits for
            the trainer.
        start_timeout_s: the longest a kernel may take to start.
        smoke_test: train even below the sample-count gate (``--smoke-test``); the version is
            labelled a smoke test in the report and the registry and never becomes current.
    """

    notebooks_dir: str = ""
    smoke_test: bool = False
    cell_timeout_s: int = 1800
    training_cell_timeout_s: int = 12 * 3600
    start_timeout_s: int = 120

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PipelineParams:
        """Build from a YAML block; unknown keys and non-positive timeouts raise ConfigError."""
        from metahuman_lib.parameters import _unknown_message

        names = [f for f in cls.__dataclass_fields__]
        for key in values:
            if key not in names:
                raise ConfigError(_unknown_message("pipeline key", str(key), names))
        params = cls(**dict(values))
        for key in ("cell_timeout_s", "training_cell_timeout_s", "start_timeout_s"):
            value = getattr(params, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"pipeline.{key} must be a whole number of seconds > 0, got {value!r}.")
        return params

    def timeout_for(self, step: Step) -> int:
        return self.training_cell_timeout_s if step.trains else self.cell_timeout_s


@dataclass(frozen=True)
class CycleResult:
    """What a run did: its folder, final status, and each step's status."""

    run_dir: Path
    status: str
    steps: Mapping[str, str]
    report: Path | None = None
    index: Path | None = None
    resumed: bool = False
    error: str | None = None


@dataclass
class _Context:
    profile: Profile
    params: RunParameters
    run_dir: Path
    backend: str
    dry_run: bool
    redact: bool
    notebooks_dir: Path
    progress: bool
    echo: Callable[[str], None]
    timeouts: PipelineParams = field(default_factory=PipelineParams)  # the pipeline block (timeouts, smoke test)


def run_cycle(
    profile: Profile,
    params: RunParameters,
    *,
    backend: str,
    now: datetime,
    dry_run: bool = False,
    redact: bool = False,
    resume_run: Path | None = None,
    progress: bool = True,
    steps: tuple[Step, ...] = STEPS,
    notebooks_dir: Path | None = None,
    echo: Callable[[str], None] | None = None,
    auto_resume: bool = True,
) -> CycleResult:
    """Execute one run of the monthly job, or resume one, and write its reports.

    Args:
        profile: whose memories and models.
        params: the resolved parameters (ignored when resuming: a run keeps its own).
        backend: ``local`` or ``runpod``.
        now: the wall-clock time of this call, for the run label.
        dry_run: do everything but training; evaluation and registry are skipped.
        redact: reports without memory text.
        resume_run: a run folder to resume from its first unfinished step.
        progress: show papermill's per-cell progress bar.
        steps: the steps to run (tests use fewer).
        notebooks_dir: the step notebooks (default: see :class:`PipelineParams`).
        echo: where one-line progress messages go (default: nowhere).
        auto_resume: resume the profile's latest unfinished run when it has the same parameters.

    Returns:
        The run's folder, status and step states.

    Raises:
        PipelineStepError: a step failed; the message names it, says why, and how to resume.
    """
    say = echo or (lambda _line: None)
    resumed = resume_run is not None
    if resume_run is None and auto_resume:
        resume_run = find_resumable_run(profile, params, backend=backend, dry_run=dry_run)
        if resume_run is not None:
            cycle = read_manifest(resume_run).get("cycle", {})
            why = "it was interrupted" if cycle.get("status") == "interrupted" else (
                f"it stopped on an error: {cycle.get('error')}" if cycle.get("error") else "it did not finish")
            say(f"Resuming run {resume_run.name} ({why}), from its first unfinished step; "
                "pass --new-run to start a new run instead.")
            resumed = True
    if resume_run is not None:
        run_dir = Path(resume_run).resolve()
        params, backend, dry_run, redact = _recorded_run(run_dir, redact)
    else:
        run_dir = profile.run_dir(make_run_label(now))
    pipeline_params = params.pipeline if isinstance(params.pipeline, PipelineParams) \
        else PipelineParams.from_dict(params.pipeline)
    ctx = _Context(profile, params, run_dir, backend, dry_run, redact,
                   _notebooks_dir(notebooks_dir, pipeline_params), progress, say, pipeline_params)
    for step in steps:
        notebook_path(ctx.notebooks_dir, step)
    with run_lock(profile, run_dir.name):  # registry's profile lock: one run at a time
        _start_cycle(ctx, steps, resumed)
        error, refused = None, False
        try:
            for step in steps:
                _run_step(ctx, step)
        except PipelineStepError as exc:
            error, refused = str(exc), isinstance(exc, GateRefused)
        except KeyboardInterrupt:
            _finish_cycle(ctx, "interrupted", "interrupted by the user (Ctrl-C)")
            raise
        status = ("refused" if refused else "failed") if error else ("dry_run" if dry_run else "succeeded")
        try:
            _finish_cycle(ctx, status, error)
            report, index = _write_reports(ctx)
        except WorkbenchError as exc:
            if not error:
                raise
            ctx.echo(f"Reports not written: {exc}")  # the step's own error is the one to show
            report, index = ctx.run_dir / "report.html", ctx.profile.reports_dir / "index.html"
    states = {name: info.get("status", "pending")
              for name, info in read_manifest(run_dir).get("steps", {}).items()}
    result = CycleResult(run_dir, status, states, report, index, resumed, error)
    if error:
        raise (GateRefused if refused else PipelineStepError)(error)
    return result


def find_resumable_run(profile: Profile, params: RunParameters, *, backend: str,
                       dry_run: bool) -> Path | None:
    """The latest run of the profile when it is unfinished and was started with the same
    parameters (its ``now`` aside), backend and dry-run setting; else None."""
    latest = latest_run_dir(profile)
    if latest is None:
        return None
    cycle = read_manifest(latest).get("cycle", {})
    if cycle.get("status") not in {"failed", "interrupted", "running"}:
        return None
    try:
        recorded = RunParameters.from_record(cycle["parameters"])
    except (KeyError, WorkbenchError):
        return None
    same = (recorded.fingerprint(include_now=False) == params.fingerprint(include_now=False)
            and cycle.get("backend") == backend and bool(cycle.get("dry_run")) == dry_run)
    return latest if same else None


def latest_run_dir(profile: Profile) -> Path | None:
    """The newest run folder of a profile by run label (labels sort by time), or None."""
    runs = list_run_dirs(profile)
    return runs[-1] if runs else None


def notebook_path(notebooks_dir: Path, step: Step) -> Path:
    """The notebook of a step; a missing one is a ConfigError naming the folder."""
    path = Path(notebooks_dir) / f"{step.name}.ipynb"
    if not path.is_file():
        raise ConfigError(f"Notebook for step {step.name!r} not found: expected {path}. "
                          f"Set pipeline.notebooks_dir or ${NOTEBOOKS_ENV_VAR}.")
    return path


def default_notebooks_dir() -> Path:
    """``$METAHUMAN_NOTEBOOKS``, else the ``notebooks/`` folder beside the package."""
    env = os.environ.get(NOTEBOOKS_ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "notebooks"


def notebook_parameters(notebook: Path) -> dict[str, dict[str, Any]]:
    """The notebook's declared parameters (papermill's inspection): name -> default and type."""
    import papermill

    return dict(papermill.inspect_notebook(str(notebook)))


def check_parameters(notebook: Path, values: Mapping[str, Any]) -> None:
    """Refuse parameters the notebook does not declare, or of another type than its default.

    Papermill itself only warns about unknown names; a misspelt parameter would silently do
    nothing, so it is an error here.
    """
    from metahuman_lib.parameters import _unknown_message

    declared = notebook_parameters(notebook)
    for name, value in values.items():
        if name not in declared:
            raise ConfigError(f"{notebook.name}: " + _unknown_message("notebook parameter", name,
                                                                        sorted(declared)))
        expected = _declared_type(declared[name])
        if not _type_matches(expected, value):
            raise ConfigError(f"{notebook.name}: parameter {name!r} expects {expected}, "
                              f"got {type(value).__name__} {value!r}.")


def execute_notebook(notebook: Path, output: Path, values: Mapping[str, Any], *,
                     timeout_s: int, start_timeout_s: int = 120, cwd: Path | None = None,
                     progress: bool = True) -> None:
    """Execute one notebook with typed, checked parameters and explicit time limits.

    Raises:
        PipelineStepError: the notebook raised (the reason is the error's message), a cell ran
            past ``timeout_s``, or the kernel died.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    check_parameters(notebook, values)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _kernel_environment():
            papermill.execute_notebook(
                str(notebook), str(output), parameters=dict(values), kernel_name="python3",
                execution_timeout=timeout_s, start_timeout=start_timeout_s,
                progress_bar=progress, cwd=str(cwd) if cwd else None, report_mode=False,
                kernel_manager_class=_local_kernel_manager(),
            )
    except PapermillExecutionError as exc:
        refused = exc.ename == GateRefused.__name__
        raise (GateRefused if refused else PipelineStepError)(failure_reason(exc.ename, exc.evalue)) from None
    except TimeoutError as exc:
        raise PipelineStepError(f"a cell ran longer than the {timeout_s} s execution timeout "
                                f"({type(exc).__name__})") from None
    except RuntimeError as exc:
        if type(exc).__name__ == "DeadKernelError":
            raise PipelineStepError(f"the notebook's kernel died: {exc}") from None
        raise


def failure_reason(ename: str, evalue: str) -> str:
    """A readable reason from a notebook's exception: our own errors keep their message only."""
    ours = {cls.__name__ for cls in _error_classes()}
    text = str(evalue).strip()
    if ename in ours and text:
        return text
    return f"{ename}: {text}" if text else ename


def step_parameters(notebook: Path, pool: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a step passes: every pooled value the notebook declares.

    The notebook must declare ``username``, ``root`` and ``run_dir`` (the run's contract).
    """
    declared = notebook_parameters(notebook)
    missing = [name for name in REQUIRED_NOTEBOOK_PARAMETERS if name not in declared]
    if missing:
        raise ConfigError(f"{notebook.name} does not declare the parameter(s) {', '.join(missing)} "
                          "in its 'parameters' cell; every step notebook must.")
    return {name: pool[name] for name in declared if name in pool}


def parameter_pool(ctx: _Context, step: Step) -> dict[str, Any]:
    """Everything a step's notebook may ask for, by parameter name: the run's common values and
    the step's own (:data:`STEP_PARAMETERS`). Only the names a notebook declares are passed."""
    params = ctx.params
    pool: dict[str, Any] = {
        "username": ctx.profile.username,
        "root": str(ctx.profile.root),
        "run_dir": str(ctx.run_dir),
        "now": params.now.isoformat().replace("+00:00", "Z"),
        "seed": params.seed,
        "backend": ctx.backend,
        "dry_run": ctx.dry_run,
        "redact": ctx.redact,
    }
    builder = STEP_PARAMETERS.get(step.name)
    if builder is not None:
        pool.update(builder(ctx))
    return pool


def _quality_values(ctx: _Context) -> dict[str, Any]:
    selection = ctx.params.raw.get("selection", {})
    values = {"kind": "foundation" if ctx.params.kind == "foundation" else "monthly",
              "mode": selection.get("mode") or "",
              "gate_settings": plain_data(ctx.params.raw.get("quality", {})),
              "smoke_test": bool(ctx.timeouts.smoke_test)}
    if selection.get("days_recent") is not None:
        values["recent_days"] = selection["days_recent"]
    return values


def _selection_values(ctx: _Context) -> dict[str, Any]:
    return {"strategy": str(parameter_set_file(ctx.run_dir, ctx.params))}


def _training_values(ctx: _Context) -> dict[str, Any]:
    # the run's train_config.json is prepared before the notebook runs (prepare_training)
    return {"timeout_s": ctx.timeouts.training_cell_timeout_s}


def _evaluation_values(ctx: _Context) -> dict[str, Any]:
    return {"gate": plain_data(ctx.params.raw.get("gate", {})), "fail_on_reject": False}


# step -> the values only that step's notebook takes (names as its parameters cell spells them)
STEP_PARAMETERS: dict[str, Callable[[_Context], dict[str, Any]]] = {
    "01_quality_review": _quality_values,
    "02_curation": _selection_values,
    "03_training_launch": _training_values,
    "04_evaluation": _evaluation_values,
}


def parameter_set_file(run_dir: Path, params: RunParameters) -> Path:
    """The run's resolved parameter set as YAML (``parameters/<name>.yaml`` in the run folder).

    Notebooks that load a parameter set by name or path (``strategy``) get this file, so the
    flags applied on the command line reach them.
    """
    return Path(run_dir) / PARAMETER_SET_DIR / f"{params.name}.yaml"


def write_parameter_set(run_dir: Path, params: RunParameters) -> Path:
    """Write :func:`parameter_set_file` once (a resumed run keeps the file it started with)."""
    import yaml

    path = parameter_set_file(run_dir, params)
    if not path.exists():
        document = {"description": f"Resolved parameters of run {Path(run_dir).name}",
                    "seed": params.seed, **plain_data(params.raw)}
        atomic_write_bytes(path, yaml.safe_dump(document, sort_keys=False).encode("utf-8"))
    return path


def _run_step(ctx: _Context, step: Step) -> None:
    """Execute one step unless it already finished; record everything it did."""
    info = read_manifest(ctx.run_dir).get("steps", {}).get(step.name, {})
    if info.get("status") in FINISHED_STATES:
        ctx.echo(f"[{step.name}] already {info['status']}, skipping")
        return
    if ctx.dry_run and step.needs_model:
        _record_step(ctx, step, status="skipped", reason="dry_run: no model was trained",
                     finished_at=utc_now_iso())
        ctx.echo(f"[{step.name}] skipped (dry run)")
        return
    notebook = notebook_path(ctx.notebooks_dir, step)
    if step.trains:
        try:
            prepare_training(ctx.run_dir, ctx.profile, ctx.params)
        except WorkbenchError as exc:
            _record_step(ctx, step, status="failed", error=str(exc), finished_at=utc_now_iso())
            raise PipelineStepError(f"Step {step.name} ({step.title}) failed: {exc}") from None
        if ctx.dry_run and "dry_run" not in notebook_parameters(notebook):
            _record_step(ctx, step, status="skipped", finished_at=utc_now_iso(),
                         reason="dry_run: train_config.json prepared, training not launched")
            ctx.echo(f"[{step.name}] prepared, not launched (dry run)")
            return
    values = step_parameters(notebook, parameter_pool(ctx, step))
    output = ctx.run_dir / "notebooks" / notebook.name
    before = _snapshot(ctx.run_dir)
    started = time.monotonic()
    _record_step(ctx, step, status="running", started_at=utc_now_iso(), finished_at=None,
                 error=None, notebook=f"notebooks/{notebook.name}",
                 inputs={"notebook_sha256": sha256_file(notebook), "parameters": values})
    ctx.echo(f"[{step.name}] {step.title} ...")
    try:
        execute_notebook(notebook, output, values, timeout_s=ctx.timeouts.timeout_for(step),
                         start_timeout_s=ctx.timeouts.start_timeout_s, cwd=ctx.run_dir,
                         progress=ctx.progress)
    except GateRefused as exc:
        _close_step(ctx, step, "refused", before, started, error=str(exc))
        ctx.echo(f"[{step.name}] refused: {exc}")
        raise GateRefused(
            f"Step {step.name} ({step.title}) refused the run: {exc} The run is finished; the next "
            "invocation starts a new run (once there are enough memories; --smoke-test trains a small "
            "dataset anyway, as a test that never becomes current).") from None
    except (WorkbenchError, OSError) as exc:
        error = storage_error(output, exc) if isinstance(exc, OSError) else exc  # a full disk: one line
        with contextlib.suppress(WorkbenchError, OSError):  # recording may need the disk that is full
            _close_step(ctx, step, "failed", before, started, error=str(error))
        ctx.echo(f"[{step.name}] failed: {error}")
        raise PipelineStepError(
            f"Step {step.name} ({step.title}) failed: {error}. Fix the cause, then resume with: "
            f"metahuman fine-tune-cycle --username {ctx.profile.username} --resume {ctx.run_dir}"
        ) from None
    except KeyboardInterrupt:
        _close_step(ctx, step, "interrupted", before, started, error="interrupted by the user")
        raise
    _close_step(ctx, step, "succeeded", before, started)
    ctx.echo(f"[{step.name}] done in {time.monotonic() - started:.0f} s")


def prepare_training(run_dir: Path, profile: Profile, params: RunParameters) -> Path | None:
    """Write the run's ``train_config.json`` (once): the ``training`` block, building on the
    registry's current version for an update run (defect 8: the parent is never dropped).

    A foundation run starts from ``training.base_model``. An update run continues the current
    version (its adapter on the same base, or its full checkpoint); a ``--base-model`` that is not
    that lineage's base is refused rather than silently training something else.

    Returns:
        The file written, or None when the run already had one (a resumed run keeps it), or when
        the training module is not installed.
    """
    try:
        from metahuman_lib.training.config import (
            TRAIN_CONFIG_NAME,
            ParentRef,
            TrainConfig,
            write_train_config,
        )
    except ImportError:
        return None
    if (Path(run_dir) / TRAIN_CONFIG_NAME).exists():
        return None
    config = params.training if isinstance(params.training, TrainConfig) \
        else TrainConfig.from_dict(dict(params.training))
    if params.kind == "update":
        parent = _registry_parent(profile, config, "--base-model" in params.flags)
        if parent is not None:
            version, path, kind, sha, base = parent
            config = config.replace(parent=ParentRef(version=version, path=path, kind=kind, sha256=sha),
                                    base_model=base or config.base_model)
    return write_train_config(Path(run_dir), config)


def _registry_parent(profile: Profile, config: Any, base_flag: bool) -> tuple[int, str, str, str | None,
                                                                                 str | None] | None:
    """(version, weights folder, adapter|model, sha256, base model) of the current version, or None."""
    from metahuman_lib.registry import current_version

    current = current_version(profile)
    if current is None or not current.get("output_path"):
        return None
    lineage_base = current.get("base_model")
    if base_flag and lineage_base and config.base_model != lineage_base:
        raise ConfigError(
            f"--base-model {config.base_model} is not the base of the current version "
            f"v{current['version']} ({lineage_base}); an update run builds on the current version. "
            "Start a new lineage with a foundation run (no window flags) and --base-model, or run "
            "without --base-model."
        )
    path = Path(current["output_path"])
    path = path if path.is_absolute() else profile.root / path
    kind = "adapter" if current.get("output_kind") == "adapter" or path.name == "adapter" else "model"
    base = lineage_base if kind == "adapter" else None
    if base and not Path(base).is_absolute() and (profile.root / base).is_dir():
        base = str(profile.root / base)  # a LoRA lineage on a full-model version: that version's folder
    return int(current["version"]), str(path), kind, current.get("output_sha256"), base


def _close_step(ctx: _Context, step: Step, status: str, before: dict[str, tuple[int, int]],
                started: float, error: str | None = None) -> None:
    """Record a finished step's status, outputs and error, then export its HTML report."""
    after = _snapshot(ctx.run_dir)
    outputs = {path: {"bytes": size} for path, (size, mtime) in sorted(after.items())
               if before.get(path) != (size, mtime)}
    try:
        report = _export_step_report(ctx, step)
    except WorkbenchError as exc:  # a full disk or a read-only folder: the step cannot be trusted
        _record_step(ctx, step, status="failed", finished_at=utc_now_iso(), outputs=outputs, error=str(exc))
        raise PipelineStepError(
            f"Step {step.name} ({step.title}) failed: {exc} Fix the cause, then resume with: "
            f"metahuman fine-tune-cycle --username {ctx.profile.username} --resume {ctx.run_dir}") from None
    _record_step(ctx, step, status=status, finished_at=utc_now_iso(),
                 duration_s=round(time.monotonic() - started, 2), outputs=outputs, error=error,
                 report=report)


def _export_step_report(ctx: _Context, step: Step) -> str | None:
    """Export the executed notebook to ``reports/<step>.html``; a failed export is recorded, not fatal."""
    from metahuman_lib import reports

    executed = ctx.run_dir / "notebooks" / f"{step.name}.ipynb"
    if not executed.is_file():
        return None
    target = ctx.run_dir / "reports" / f"{step.name}.html"
    reports.export_notebook_html(executed, target, redact=ctx.redact, run_dir=ctx.run_dir)
    return f"reports/{step.name}.html"


def _record_step(ctx: _Context, step: Step, **values: Any) -> None:
    def change(manifest: dict[str, Any]) -> None:
        entry = manifest.setdefault("steps", {}).setdefault(step.name, {"title": step.title})
        entry.update(values)

    update_manifest(ctx.run_dir, change)


def _start_cycle(ctx: _Context, steps: tuple[Step, ...], resumed: bool) -> None:
    """Record the run's parameters (once) and mark it running."""
    record = ctx.params.to_record()
    params_path = ctx.run_dir / PARAMETERS_FILE
    if not params_path.exists():
        atomic_write_json(params_path, record)
    write_parameter_set(ctx.run_dir, ctx.params)

    def change(manifest: dict[str, Any]) -> None:
        cycle = manifest.setdefault("cycle", {})
        cycle.setdefault("parameters", record)
        cycle.setdefault("started_at", utc_now_iso())
        cycle.setdefault("username", ctx.profile.username)
        cycle.update(backend=ctx.backend, dry_run=ctx.dry_run, redact=ctx.redact,
                     kind=ctx.params.kind, status="running", error=None,
                     steps=[s.name for s in steps])
        if resumed:
            cycle.setdefault("resumed_at", []).append(utc_now_iso())
        entries = manifest.setdefault("steps", {})
        for step in steps:
            entries.setdefault(step.name, {"title": step.title, "status": "pending"})

    update_manifest(ctx.run_dir, change)
    ctx.echo(f"Run folder: {ctx.run_dir}")


def _finish_cycle(ctx: _Context, status: str, error: str | None) -> None:
    def change(manifest: dict[str, Any]) -> None:
        manifest.setdefault("cycle", {}).update(status=status, error=error, finished_at=utc_now_iso())

    update_manifest(ctx.run_dir, change)


def _write_reports(ctx: _Context) -> tuple[Path, Path]:
    from metahuman_lib import reports

    gpu_types = tuple(getattr(ctx.params.runpod, "gpu_types", ()) or ())
    try:
        reports.record_cost(ctx.run_dir, backend=ctx.backend, gpu_types=gpu_types)
    except WorkbenchError as exc:  # a cost figure must never fail a finished run
        ctx.echo(f"Cost not computed: {exc}")
    report = reports.write_run_report(ctx.run_dir, redact=ctx.redact)
    index = reports.write_index(ctx.profile, redact=ctx.redact)
    ctx.echo(f"Run report: {report}")
    ctx.echo(f"All runs:   {index}")
    return report, index


def _recorded_run(run_dir: Path, redact: bool) -> tuple[RunParameters, str, bool, bool]:
    """The parameters, backend, dry-run and redact settings a run folder was started with."""
    cycle = read_manifest(run_dir).get("cycle")
    if not cycle or "parameters" not in cycle:
        raise ConfigError(f"{run_dir} is not a run started by fine-tune-cycle (its manifest has no "
                          "'cycle' section); start a new run instead.")
    if cycle.get("status") in {"succeeded", "dry_run"}:
        raise ConfigError(f"Run {run_dir.name} already finished ({cycle['status']}); nothing to resume.")
    params = RunParameters.from_record(cycle["parameters"])
    return params, cycle["backend"], bool(cycle["dry_run"]), bool(cycle.get("redact")) or redact


def _notebooks_dir(explicit: Path | None, pipeline_params: PipelineParams) -> Path:
    if explicit is not None:
        return Path(explicit)
    if pipeline_params.notebooks_dir:
        return Path(pipeline_params.notebooks_dir).expanduser()
    return default_notebooks_dir()


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file a step may have written (not the pipeline's own files)."""
    files: dict[str, tuple[int, int]] = {}
    if not run_dir.is_dir():
        return files
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir)
        if not path.is_file() or rel.parts[0] in _UNTRACKED_DIRS or rel.as_posix() in _UNTRACKED:
            continue
        stat = path.stat()
        files[rel.as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return files


def _declared_type(spec: Mapping[str, Any]) -> str:
    """A parameter's type: its annotation, else the type of its default literal ('None': any)."""
    annotated = spec.get("inferred_type_name") or "None"
    if annotated != "None":
        return annotated
    try:
        default = ast.literal_eval(str(spec.get("default", "None")))
    except (ValueError, SyntaxError):
        return "None"
    return "None" if default is None else type(default).__name__


def _type_matches(expected: str, value: Any) -> bool:
    """Whether ``value`` fits a notebook parameter whose default has type ``expected``."""
    if expected in {"None", "", "Any"} or value is None and expected == "None":
        return True
    simple = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}
    kind = simple.get(expected.split("[")[0])
    if kind is None:
        return True
    if kind is int and isinstance(value, bool):
        return False
    return isinstance(value, kind)


def _error_classes() -> list[type]:
    found: list[type] = []
    queue: list[type] = [WorkbenchError]
    while queue:
        cls = queue.pop()
        found.append(cls)
        queue.extend(cls.__subclasses__())
    return found


def _local_kernel_manager() -> type:
    """A kernel manager that talks to its kernel over local IPC sockets, not TCP: nothing to
    encrypt, and no "Kernel is running over TCP without encryption" line in every step's output."""
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return LocalKernelManager


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """Kernels render plotly as plain figure data (reports embed plotly.js once, offline)."""
    saved = os.environ.get("PLOTLY_RENDERER")
    os.environ["PLOTLY_RENDERER"] = "plotly_mimetype"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PLOTLY_RENDERER", None)
        else:
            os.environ["PLOTLY_RENDERER"] = saved


# --------------------------------------------------------------------------- the demo

DEMO_MONTH = timedelta(days=30)
DEMO_MODEL_DIR = "demo-models/tiny-qwen2"
DEMO_PARAMETERS_DIR = "demo-parameters"
# CPU-sized training for the tiny model: a full fine-tune (its random weights learn far faster
# than a LoRA adapter on them) on short sequences; a real model keeps LoRA by default
DEMO_TRAINING: dict[str, Any] = {
    "method": "full",
    "optimizer": "adamw",
    "learning_rate": 3e-3,
    "batch_size": 8,
    "grad_accum": 1,
    "max_seq_len": 192,
    "warmup_ratio": 0.05,
    "eval_batch_size": 16,
    "eval_train_samples": 32,
    "checkpoint_every_steps": 1000,
    "probe_prompts": ["How are you feeling today?", "What did you do this afternoon?"],
    "probe_max_new_tokens": 24,
}


@dataclass(frozen=True)
class DemoRun:
    """One run of the demo: the shipped parameter set it starts from and what the demo changes."""

    name: str
    parameter_set: str
    description: str
    training: Mapping[str, Any]
    selection: Mapping[str, Any]


DEMO_RUNS: tuple[DemoRun, ...] = (
    DemoRun("foundation", "foundation",
            "Demo foundation run: every memory up to a month before the profile's end, trained close "
            "to convergence on a tiny CPU model.",
            {"epochs": 16.0, "learning_rate": 3e-3}, {}),
    DemoRun("monthly-no-replay", "monthly",
            "Demo monthly run without replay: only the newest month, to show the forgetting that "
            "replay prevents (the gate rejects it).",
            {"epochs": 3.0, "learning_rate": 2e-3}, {"old_samples": 0}),
    DemoRun("monthly", "monthly",
            "Demo monthly run: the newest month plus older memories replayed against forgetting.",
            {"epochs": 3.0, "learning_rate": 2e-3}, {"old_samples": 500}),
)
"""The demo's story in order. The run without replay goes before the one with replay so that
both build on the foundation (v1): it is rejected and v1 stays current until the replayed run
is promoted."""


# the seed's gates ask for 3,000+ samples (foundation) and 500+ new ones (monthly): the demo
# profile is smaller, so its runs lower those two thresholds and keep every other gate
DEMO_QUALITY: dict[str, Any] = {"min_total_foundation": 300, "min_new_monthly": 100}


def demo_times(profile: Profile) -> tuple[datetime, datetime]:
    """(foundation ``now``, monthly ``now``): the demo profile's end, and a month before it.

    The demo profile holds memories up to its end date; the foundation run is dated one month
    earlier, so it sees only the memories before that (selection sets newer ones aside), and the
    monthly run at the end date finds a month of new memories to learn.
    """
    from metahuman_lib.demo import DEMO_END, MARKER_NAME

    end = DEMO_END
    marker = profile.profile_dir / MARKER_NAME
    if marker.is_file():
        recorded = _read_small_json(marker).get("end")
        if recorded:
            end = parse_now(recorded)
    return end - DEMO_MONTH, end


def _read_small_json(path: Path) -> dict[str, Any]:
    """A small JSON file as a dict (empty when unreadable)."""
    from metahuman_lib._io import read_json

    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_demo_parameters(profile: Profile, base_model: Path,
                          training: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """The demo's parameter sets, one per :data:`DEMO_RUNS` entry, written under
    ``<root>/demo-parameters/``: the shipped set with a CPU-sized ``training`` block on the tiny
    base model. ``training`` replaces keys of every run's training block (tests train less)."""
    import yaml

    from metahuman_lib.strategies import read_parameter_set

    folder = profile.root / DEMO_PARAMETERS_DIR
    paths = {}
    for run in DEMO_RUNS:
        document = dict(read_parameter_set(run.parameter_set))
        document["description"] = run.description
        document["selection"] = {**dict(document.get("selection") or {}), **run.selection}
        document["training"] = {**dict(document.get("training") or {}), **DEMO_TRAINING, **run.training,
                                **dict(training or {}), "base_model": str(base_model)}
        document["quality"] = {**dict(document.get("quality") or {}), **DEMO_QUALITY}
        path = folder / f"demo-{run.name}.yaml"
        atomic_write_bytes(path, yaml.safe_dump(document, sort_keys=False).encode("utf-8"))
        paths[run.name] = path
    return paths


def ensure_demo_model(profile: Profile) -> Path:
    """The tiny base model of the demo, built once from the demo profile's own text."""
    from metahuman_lib.training.tiny import build_tiny_model, profile_texts

    target = profile.root / DEMO_MODEL_DIR
    if not (target / "config.json").is_file():
        build_tiny_model(target, profile_texts(profile))
    return target


def run_demo(profile: Profile, *, echo: Callable[[str], None] | None = None, progress: bool = False,
             redact: bool = False, training: Mapping[str, Any] | None = None) -> list[CycleResult]:
    """``make demo``: the foundation run, then the same monthly run one simulated month later
    without replay (rejected: it forgets) and with replay (promoted), both building on v1.

    Writes the demo profile and the tiny base model when missing; trains locally on the CPU.
    ``training`` replaces keys of every run's training block (tests train fewer steps).
    """
    from metahuman_lib.demo import resolve_profile
    from metahuman_lib.parameters import CycleFlags, resolve_parameters

    say = echo or (lambda _line: None)
    profile = resolve_profile(profile.username, profile.root)
    foundation_now, monthly_now = demo_times(profile)
    say(f"Demo profile: {profile.profile_dir}")
    base = ensure_demo_model(profile)
    say(f"Tiny base model: {base}")
    sets = write_demo_parameters(profile, base, training)
    results = []
    for run in DEMO_RUNS:
        when = foundation_now if run.parameter_set == "foundation" else monthly_now
        say(f"\n== {run.name} run as of {when:%Y-%m-%d}")
        params = resolve_parameters(CycleFlags(params=str(sets[run.name]), now=when))
        results.append(run_cycle(profile, params, backend="local", now=when, progress=progress,
                                 redact=redact, echo=say))
    return results
