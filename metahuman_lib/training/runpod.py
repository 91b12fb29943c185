"""Train on a rented RunPod GPU, and never leave a pod billing.

One run = one pod. :meth:`RunPodBackend.launch` rents a pod (GPU types in order, COMMUNITY then
SECURE), waits until SSH answers with Python present, uploads the run's inputs, our trainer code
and the parent weights over SFTP with sha256 checks, and starts the trainer detached
(``setsid nohup``) so a dropped connection does not stop it. :meth:`RunPodBackend.wait` polls
``status.json``, enforces the budget and the time-out, downloads only the final outputs (checked
against a manifest computed on the pod), deletes the person's data from the pod, and terminates
the pod. Termination sits in ``finally`` blocks: success, trainer failure, exception, Ctrl-C,
time-out and budget all end with a confirmed terminate.

State lives only in the run folder: ``manifest.json`` section ``training.runpod`` (pod id, host
key, trainer pid, state, price, uptime, cost) and ``runpod_events.jsonl`` (what happened, when).
Launching a run whose pod is still alive re-attaches to it instead of renting a second one.
"""

from __future__ import annotations

import json
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from metahuman_lib._io import atomic_write_json, read_json, sha256_tree
from metahuman_lib.errors import BackendError, ConfigError
from metahuman_lib.runfolder import read_manifest, update_manifest
from metahuman_lib.training.backend import JobStatus
from metahuman_lib.training.pods import (
    FINAL_RUN_STATES,
    RUN_MARK_ENV,
    PodApi,
    PodInfo,
    create_pod_with_fallback,
    new_run_mark,
    pod_name,
    resolve_api_key,
    terminate_confirmed,
    wait_until_mapped,
)
from metahuman_lib.training.runpod_config import RunPodConfig, run_runpod_block
from metahuman_lib.training.transfer import (
    SshConnection,
    SshEndpoint,
    download_verified,
    remote_manifest,
    tree_files,
    upload_files,
)

EVENTS_NAME = "runpod_events.jsonl"
TRAINER_LOG_NAME = "trainer.log"
#: The only things that come home from a successful run (never checkpoints, defect 10).
FINAL_OUTPUTS = ("output", "metrics.json", "train_log.jsonl", "status.json",
                 "effective_config.json", "generations.jsonl")
#: What comes home from a failed run: enough to say why, nothing heavy.
FAILURE_OUTPUTS = ("status.json", "train_log.jsonl", "effective_config.json", TRAINER_LOG_NAME)
#: Run folder files never sent to the pod (outputs, reports, our own records).
_NOT_UPLOADED = {"output", "notebooks", "reports", "report.html", "status.json", "metrics.json",
                 "train_log.jsonl", "effective_config.json", "generations.jsonl", EVENTS_NAME,
                 TRAINER_LOG_NAME, "Modelfile"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class RunStopped(BackendError):
    """The backend stopped a run on purpose (time-out or budget); the pod was terminated."""


class RunPodBackend:
    """The RunPod implementation of the :class:`~metahuman_lib.training.backend.Backend` protocol.

    Args:
        config: the ``runpod:`` parameter block (a :class:`RunPodConfig` or its dict form).
        credentials_file: the SDK credentials file to read the key from when ``RUNPOD_API_KEY``
            is unset (default ``~/.runpod/config.toml``).
        clock: returns the current UTC time (budget and records).
        sleep: pauses between polls.
    """

    name = "runpod"

    def __init__(self, config: RunPodConfig | Mapping[str, Any] | None = None, *,
                 credentials_file: str | Path | None = None,
                 clock: Callable[[], datetime] = _utc_now,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._from_run_folder = config is None
        self.config = config if isinstance(config, RunPodConfig) else RunPodConfig.from_dict(config)
        self._credentials_file = credentials_file
        self._clock = clock
        self._sleep = sleep
        self._api: PodApi | None = None
        self._connections: dict[Path, SshConnection] = {}

    def __repr__(self) -> str:
        return f"RunPodBackend(gpu_types={list(self.config.gpu_types)!r})"

    # ================================================================ protocol
    def launch(self, run_dir: Path) -> JobStatus:
        """Rent a pod and start the trainer, or re-attach to the pod this run already has.

        Any failure before the trainer is running terminates the pod it created.
        """
        run_dir = Path(run_dir).resolve()
        self._adopt_run_settings(run_dir)
        state = self._state(run_dir)
        if state.get("pod_id") and not state.get("terminated"):
            pod = self.api.get(state["pod_id"])
            if pod is not None and pod.desired_status != "TERMINATED":
                self._event(run_dir, "reattached", pod_id=pod.id, state=state.get("state"))
                with self._guard(run_dir):
                    if not state.get("trainer_pid"):
                        self._prepare_pod(run_dir, pod)
                        self._start_trainer(run_dir)
                    return self.poll(run_dir)
            self._record(run_dir, state="lost", terminated=True,
                         error="the pod vanished before the run finished")
            self._event(run_dir, "pod_vanished", pod_id=state["pod_id"])
        elif state.get("state") == "succeeded":
            return self._local_status(run_dir)
        return self._start(run_dir)

    def poll(self, run_dir: Path) -> JobStatus:
        """The trainer's status as the pod reports it (the local copy once the run is over)."""
        run_dir = Path(run_dir).resolve()
        self._adopt_run_settings(run_dir)
        state = self._state(run_dir)
        if not state.get("pod_id") or state.get("terminated"):
            return self._local_status(run_dir)
        conn = self._connection(run_dir, state)
        return self._remote_status(run_dir, conn, state)

    def wait(self, run_dir: Path, *, progress: bool = True, timeout_s: float | None = None) -> JobStatus:
        """Poll until the trainer finishes, bring home the outputs, clean up and terminate.

        Returns the final status (``succeeded`` or ``failed``). Raises :class:`RunStopped` when
        the time-out or the budget stopped the run; re-raises ``KeyboardInterrupt``. In every case
        the pod is terminated before this returns or raises.
        """
        run_dir = Path(run_dir).resolve()
        self._adopt_run_settings(run_dir)
        state = self._state(run_dir)
        if not state.get("pod_id"):
            raise BackendError(f"No RunPod pod recorded in {run_dir}: call launch() first.")
        if state.get("terminated"):
            return self._local_status(run_dir)
        with self._guard(run_dir):
            status = self._poll_until_done(run_dir, progress=progress, timeout_s=timeout_s)
            self._bring_home(run_dir, status, progress=progress)
            self._record(run_dir, state=status.state, error=status.error)
        return self._local_status(run_dir)

    def cancel(self, run_dir: Path) -> JobStatus:
        """Stop the trainer, delete the data on the pod and terminate it."""
        run_dir = Path(run_dir).resolve()
        self._adopt_run_settings(run_dir)
        state = self._state(run_dir)
        if state.get("pod_id") and not state.get("terminated"):
            self._finish(run_dir, "cancelled", "cancelled by the user")
        return self._local_status(run_dir)

    def run(self, run_dir: Path, *, progress: bool = True, timeout_s: float | None = None) -> JobStatus:
        """Launch (or re-attach) and wait, with the pod terminated on every path."""
        run_dir = Path(run_dir).resolve()
        with self._guard(run_dir):
            self.launch(run_dir)
            return self.wait(run_dir, progress=progress, timeout_s=timeout_s)

    def _adopt_run_settings(self, run_dir: Path) -> None:
        """A backend built without a config uses the run's own ``runpod:`` block, so the CLI, the
        launch notebook, the pipeline and a resume all rent what the run's parameter set says."""
        if self._from_run_folder:
            self.config = RunPodConfig.from_dict(run_runpod_block(run_dir))

    # ================================================================ API, state, events
    @property
    def api(self) -> PodApi:
        if self._api is None:
            self._api = PodApi(resolve_api_key(credentials_file=self._credentials_file))
        return self._api

    @staticmethod
    def _state(run_dir: Path) -> dict[str, Any]:
        return dict((read_manifest(run_dir).get("training") or {}).get("runpod") or {})

    def _record(self, run_dir: Path, **values: Any) -> None:
        def change(manifest: dict[str, Any]) -> None:
            section = manifest.setdefault("training", {}).setdefault("runpod", {})
            section.update(values)
            section["updated_at"] = _iso(self._clock())

        update_manifest(run_dir, change)

    def _event(self, run_dir: Path, event: str, **detail: Any) -> None:
        line = json.dumps({"time": _iso(self._clock()), "event": event, **detail}, sort_keys=True)
        with open(Path(run_dir) / EVENTS_NAME, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    # ================================================================ start
    def _start(self, run_dir: Path) -> JobStatus:
        _require_inputs(run_dir)
        try:
            fitting, hours, planned = self._plan_before_renting(run_dir)
        except (ConfigError, BackendError) as exc:
            self._record(run_dir, state="failed", outcome="refused_before_renting", error=str(exc))
            self._event(run_dir, "refused_before_renting", error=str(exc))
            _write_status(run_dir, "failed", "runpod:plan", str(exc))
            raise BackendError(str(exc)) from None
        label, username = run_dir.name, _username_of(run_dir)
        mark = new_run_mark()
        name = pod_name(self.config.name_prefix, username, label, mark)
        public_key = _public_key(self.config)
        previous = self._state(run_dir)
        history = list(previous.get("previous_pods") or [])
        if previous.get("pod_id"):
            history.append({k: previous.get(k) for k in ("pod_id", "run_mark", "state", "outcome", "cost_usd",
                                                         "terminated")})
        fresh = {"state": "creating", "pod_id": None, "terminated": False, "outcome": None, "error": None,
                 "pod_name": name, "run_mark": mark, "budget_usd": self.config.budget_usd,
                 "budget_hours": self.config.budget_hours, "previous_pods": history,
                 "memory_plan": planned, "gpu_order": [p.gpu for p in fitting]}
        from metahuman_lib.training.software import local_versions

        software = local_versions()
        update_manifest(run_dir, lambda manifest: manifest.setdefault("training", {}).update(
            runpod=fresh, software=software))
        self._event(run_dir, "creating_pod", name=name, gpu_types=list(self.config.gpu_types),
                    cloud_types=list(self.config.cloud_types))
        try:
            pod, attempts = create_pod_with_fallback(
                self.api, replace(self.config, gpu_types=tuple(p.gpu for p in fitting)), name,
                {"PUBLIC_KEY": public_key, RUN_MARK_ENV: mark},
                on_created=lambda pod, gpu, cloud: self._on_created(run_dir, pod, gpu, cloud),
                estimate_hours=hours)
        except BackendError as exc:
            self._record(run_dir, state="failed", outcome="pod_creation_failed", error=str(exc))
            self._event(run_dir, "pod_creation_failed", error=str(exc))
            _write_status(run_dir, "failed", "runpod:create_pod", str(exc))
            raise
        with self._guard(run_dir):
            self._record(run_dir, attempts=[a.as_dict() for a in attempts])
            self._prepare_pod(run_dir, pod)
            self._start_trainer(run_dir)
            return self.poll(run_dir)

    def _plan_before_renting(self, run_dir: Path) -> tuple[tuple[Any, ...], float | None, list[dict[str, Any]]]:
        """The GPU types of ``runpod.gpu_types`` that can hold the run, cheapest first, and its projected
        hours on the cheapest. Refuses (nothing rented) when none fits, or when the projection is over
        ``budget_hours`` or ``budget_usd``, with the figures that decide."""
        from metahuman_lib.training.cost import load_gpu_prices
        from metahuman_lib.training.planning import fitting_plans, plan_run

        prices = load_gpu_prices()
        planned = plan_run(run_dir, self.config.gpu_types, prices)
        rows = [p.as_row() for p in planned.plan.plans]
        self._record(run_dir, memory_plan=rows)
        fitting = fitting_plans(planned, prices)
        first = fitting[0]
        hours, dollars = _projection(run_dir, first, prices)
        over = []
        if hours is not None and hours > self.config.budget_hours:
            over.append(f"{hours:.2f} h > runpod.budget_hours {self.config.budget_hours:g} h")
        if dollars is not None and dollars > self.config.budget_usd:
            over.append(f"${dollars:.2f} > runpod.budget_usd ${self.config.budget_usd:.2f}")
        if over:
            raise BackendError(f"The run is projected at {hours:.2f} h and ${dollars:.2f} on {first.gpu}, the "
                               f"cheapest GPU type that fits: over the budget ({'; '.join(over)}). No pod was rented.")
        return fitting, hours, rows

    def _on_created(self, run_dir: Path, pod: PodInfo, gpu_type: str, cloud_type: str) -> None:
        now = self._clock()
        self._record(run_dir, pod_id=pod.id, gpu_type=gpu_type, cloud_type=cloud_type,
                     created_at=_iso(now), created_ts=now.timestamp(), state="starting",
                     remote_dir=_remote_base(self.config, run_dir.name))
        self._event(run_dir, "pod_created", pod_id=pod.id, gpu_type=gpu_type, cloud_type=cloud_type)

    def _prepare_pod(self, run_dir: Path, pod: PodInfo) -> None:
        mapped = wait_until_mapped(self.api, pod.id, timeout_s=self.config.ready_timeout_s,
                                   interval_s=self.config.poll_interval_s, sleep=self._sleep)
        self._record(run_dir, hourly_usd=mapped.cost_per_hr, ssh_host=mapped.ssh_host,
                     ssh_port=mapped.ssh_port, gpu=mapped.gpu)
        self._event(run_dir, "pod_mapped", host=mapped.ssh_host, port=mapped.ssh_port,
                    hourly_usd=mapped.cost_per_hr)
        conn = self._connection(run_dir, self._state(run_dir))
        self._probe(run_dir, conn)
        self._check_budget(run_dir)
        if self.config.setup_command.strip():
            self._record(run_dir, state="setting_up")
            conn.check(setup_command(self.config, run_dir), what="Installing the trainer's dependencies",
                       timeout_s=3600)
        self._record(run_dir, state="uploading")
        self._upload(run_dir, conn)
        self._check_budget(run_dir)

    def _probe(self, run_dir: Path, conn: SshConnection) -> None:
        """Readiness: SSH answers and the configured Python runs (retried until the deadline)."""
        deadline = time.monotonic() + self.config.ready_timeout_s
        command = f"{shlex.quote(self.config.python)} -c 'import sys; print(sys.version.split()[0])'"
        while True:
            try:
                version = conn.check(command, what="Readiness probe (python)", timeout_s=60).strip()
                break
            except BackendError as exc:
                if time.monotonic() >= deadline:
                    raise BackendError(f"Pod never became ready: {exc}") from None
                self._sleep(self.config.poll_interval_s)
        self._record(run_dir, state="ready", ready_at=_iso(self._clock()), host_key=conn.host_key,
                     remote_python=version)
        self._event(run_dir, "pod_ready", python=version)

    def _upload(self, run_dir: Path, conn: SshConnection) -> None:
        base = _remote_base(self.config, run_dir.name)
        files, remote_config = _upload_plan(run_dir, base)
        state = self._state(run_dir)
        planned = next((row for row in state.get("memory_plan") or [] if row.get("gpu") == state.get("gpu_type")), None)
        if planned and planned.get("fits"):  # the rented GPU's micro-batch and checkpointing, same effective batch
            remote_config.update(batch_size=planned["micro_batch"], grad_accum=planned["grad_accum"],
                                 gradient_checkpointing=planned["checkpointing"])
        code_root = Path(__file__).resolve().parents[1]
        files.update(tree_files(code_root, "code/metahuman_lib"))
        self._upload_parent_to_volume(run_dir, conn, files, remote_config)
        stats = upload_files(conn, files, base, python=self.config.python, progress=False)
        base_model = remote_config.get("base_model")
        if any(rel.startswith("base/") for rel in files):
            self._link_base(run_dir, conn, str(base_model), f"{base}/base",
                            {rel[len("base/"):]: path for rel, path in files.items() if rel.startswith("base/")})
        if isinstance(remote_config.get("parent"), dict):
            remote_config["parent"].pop("local_path", None)
        payload = json.dumps(remote_config, indent=2).encode()
        conn.retrying("Uploading train_config.json", lambda: conn.sftp.putfo(
            _bytes_io(payload), f"{base}/run/train_config.json", confirm=True))
        self._event(run_dir, "uploaded", files=stats.files, sent=stats.sent, bytes=stats.bytes,
                    drops=stats.drops)

    def _upload_parent_to_volume(self, run_dir: Path, conn: SshConnection, files: dict[str, Path],
                                 remote_config: dict[str, Any]) -> None:
        """Full fine-tunes: keep the parent checkpoint on the network volume, keyed by checksum.

        Only files the volume does not already hold (verified by sha256) are sent, so the month
        after a RunPod run the parent is usually there already and nothing large is uploaded.
        """
        parent = remote_config.get("parent")
        if not (self.config.network_volume_id and isinstance(parent, dict) and parent.get("kind") == "model"
                and any(rel.startswith("parent/") for rel in files)):
            return
        local = Path(str(remote_config["parent"]["local_path"]))
        key = sha256_tree(local)
        target = _volume_models_dir(self.config) + f"/{key}"
        parent_files = {rel[len("parent/"):]: files.pop(rel) for rel in list(files) if rel.startswith("parent/")}
        stats = upload_files(conn, parent_files, target, python=self.config.python, progress=False)
        remote_config["parent"] = {k: v for k, v in parent.items() if k != "local_path"} | {"path": target}
        self._record(run_dir, volume_parent=target)
        self._event(run_dir, "parent_on_volume", path=target, files=stats.files, sent=stats.sent)

    def _keep_output_on_volume(self, run_dir: Path, conn: SshConnection) -> None:
        """After a full fine-tune, copy the new model to the volume so next month starts from it."""
        model = run_dir / "output" / "model"
        if not (self.config.network_volume_id and model.is_dir()):
            return
        q = shlex.quote
        models = _volume_models_dir(self.config)
        target = f"{models}/{sha256_tree(model)}"
        source = _remote_base(self.config, run_dir.name) + "/run/output/model"
        keep = max(1, self.config.volume_keep_models)
        conn.check(f"mkdir -p {q(models)} && rm -rf {q(target + '.tmp')} && cp -a {q(source)} {q(target + '.tmp')} "
                   f"&& rm -rf {q(target)} && mv {q(target + '.tmp')} {q(target)} && touch {q(target)} && "
                   f"cd {q(models)} && ls -1t | tail -n +{keep + 1} | xargs -r rm -rf --",
                   what="Keeping the new model on the network volume", timeout_s=3600)
        self._record(run_dir, volume_output=target)
        self._event(run_dir, "output_on_volume", path=target)

    def _link_base(self, run_dir: Path, conn: SshConnection, local_path: str, uploaded: str,
                   files: dict[str, Path]) -> None:
        """Make the local base model's path resolve on the pod too (a symlink to the upload).

        The trainer and PEFT compare a parent adapter's ``base_model_name_or_path`` with
        ``base_model``, and the new adapter records that string: keeping the same string on the
        pod means adapters trained there load at home unchanged, and vice versa.
        """
        q = shlex.quote
        out = conn.check(f"if [ -e {q(local_path)} ] || [ -L {q(local_path)} ]; then echo EXISTS; else "
                         f"mkdir -p {q(str(PurePosixPath(local_path).parent))} && "
                         f"ln -s {q(uploaded)} {q(local_path)} && echo LINKED; fi",
                         what="Linking the base model on the pod").strip()
        if out.endswith("LINKED"):
            self._record(run_dir, base_link=local_path)
            return
        present = remote_manifest(conn, self.config.python, local_path, sorted(files))
        from metahuman_lib._io import sha256_file

        if any(present.get(rel, {}).get("sha256") != sha256_file(path) for rel, path in files.items()):
            raise BackendError(f"{local_path} already exists on the pod with other content than the local "
                               "base model; use a hub id as base_model or another local path.")

    def _start_trainer(self, run_dir: Path) -> None:
        base = _remote_base(self.config, run_dir.name)
        conn = self._connection(run_dir, self._state(run_dir))
        q = shlex.quote
        trainer = " ".join(q(part) for part in trainer_command(self.config, run_dir, base + "/run"))
        command = (
            f"cd {q(base)} || exit 1; PYTHONPATH={q(base + '/code')} setsid nohup {trainer} "
            f"> {q(base + '/run/' + TRAINER_LOG_NAME)} 2>&1 < /dev/null & echo $!"
        )
        pid = int(conn.check(command, what="Starting the trainer").strip().splitlines()[-1])
        self._record(run_dir, state="running", trainer_pid=pid, started_at=_iso(self._clock()))
        self._event(run_dir, "trainer_started", pid=pid)

    # ================================================================ polling
    def _connection(self, run_dir: Path, state: Mapping[str, Any]) -> SshConnection:
        conn = self._connections.get(run_dir)
        if conn is None:
            endpoint = SshEndpoint(str(state["ssh_host"]), int(state["ssh_port"]),
                                   self.config.ssh_user, Path(self.config.ssh_key).expanduser())
            conn = SshConnection(endpoint, host_key=state.get("host_key"),
                                 connect_timeout_s=self.config.connect_timeout_s,
                                 retries=self.config.transfer_retries,
                                 retry_delay_s=self.config.retry_delay_s, sleep=self._sleep)
            self._connections[run_dir] = conn
        return conn

    def _remote_status(self, run_dir: Path, conn: SshConnection, state: Mapping[str, Any]) -> JobStatus:
        """Read status.json and the trainer's /proc entry over SFTP (no shell: cheap to poll)."""
        base = _remote_base(self.config, run_dir.name)
        pid = state.get("trainer_pid")
        raw, alive = conn.retrying("Reading the trainer's status",
                                   lambda: (_read_remote(conn, f"{base}/run/status.json"),
                                            _process_alive(conn, pid)))
        data = _parse_status(raw) if raw is not None else None
        if data is not None:
            atomic_write_json(run_dir / "status.json", data)
        status = _job_status(data) if data else JobStatus(state="pending", phase=str(state.get("state", "")))
        if not status.finished and pid and not alive:
            # the trainer may have written its final status just before exiting: read once more
            raw = conn.retrying("Reading the trainer's status",
                                lambda: _read_remote(conn, f"{base}/run/status.json"))
            data = _parse_status(raw) if raw is not None else None
            if data is not None and _job_status(data).finished:
                atomic_write_json(run_dir / "status.json", data)
                return _job_status(data)
            return JobStatus(state="failed", phase=status.phase, step=status.step,
                             total_steps=status.total_steps,
                             error=f"the trainer process ({pid}) exited without a final status")
        return status

    def _poll_until_done(self, run_dir: Path, *, progress: bool, timeout_s: float | None) -> JobStatus:
        from tqdm.auto import tqdm

        started = time.monotonic()
        with tqdm(total=0, desc="training on RunPod", unit="step", disable=not progress, leave=False) as bar:
            while True:
                status = self.poll(run_dir)
                bar.total = max(status.total_steps, bar.total or 0)
                bar.n = status.step
                bar.set_postfix_str(status.phase or status.state, refresh=True)
                if status.finished:
                    return status
                self._check_budget(run_dir)
                if timeout_s is not None and time.monotonic() - started >= timeout_s:
                    raise RunStopped(f"Timed out after {timeout_s:g} s waiting for the trainer "
                                     f"(last: {status.state} {status.step}/{status.total_steps}); "
                                     "the pod was terminated.", )
                self._sleep(self.config.poll_interval_s)

    def _check_budget(self, run_dir: Path) -> None:
        state = self._state(run_dir)
        if not state.get("created_ts"):
            return
        hours = max(0.0, self._clock().timestamp() - float(state["created_ts"])) / 3600
        spent = hours * float(state.get("hourly_usd") or 0.0)
        if hours >= self.config.budget_hours:
            raise _BudgetExceeded(f"Budget exceeded: the pod has run {hours:.4f} h, over the "
                                  f"{self.config.budget_hours:g} h cap ('runpod.budget_hours'); the "
                                  "pod was terminated.")
        if spent >= self.config.budget_usd:
            raise _BudgetExceeded(f"Budget exceeded: ${spent:.2f} spent, over the "
                                  f"${self.config.budget_usd:.2f} cap ('runpod.budget_usd'); the pod "
                                  "was terminated.")

    # ================================================================ bring home, finish
    def _bring_home(self, run_dir: Path, status: JobStatus, *, progress: bool) -> None:
        state = self._state(run_dir)
        conn = self._connection(run_dir, state)
        remote_run = _remote_base(self.config, run_dir.name) + "/run"
        names = FINAL_OUTPUTS if status.state == "succeeded" else FAILURE_OUTPUTS
        self._record(run_dir, state="downloading")
        manifest = remote_manifest(conn, self.config.python, remote_run, names)
        if status.state == "succeeded" and not any(rel.startswith("output/") for rel in manifest):
            raise BackendError("The trainer reported success but left no output/ folder on the pod.")
        stats = download_verified(conn, manifest, remote_run, run_dir, progress=progress)
        pod_manifest = _parse_json(conn.retrying("Reading the pod's manifest",
                                                 lambda: _read_remote(conn, f"{remote_run}/manifest.json")))
        pod_training = (pod_manifest or {}).get("training") or {}
        if status.state == "succeeded" and pod_training:
            update_manifest(run_dir, lambda m: _merge_training(m, pod_training))
        if status.state == "succeeded":
            self._keep_output_on_volume(run_dir, conn)
        self._record(run_dir, downloaded={rel: entry["sha256"] for rel, entry in manifest.items()})
        self._event(run_dir, "downloaded", files=stats.files, bytes=stats.bytes, drops=stats.drops,
                    trainer_state=status.state)

    @contextmanager
    def _guard(self, run_dir: Path) -> Iterator[None]:
        """Whatever happens inside, the pod ends terminated and the run folder says why."""
        outcome, error = "succeeded", None
        try:
            yield
        except KeyboardInterrupt:
            outcome, error = "interrupted", "interrupted (Ctrl-C or kernel interrupt)"
            raise
        except _BudgetExceeded as exc:
            outcome, error = "budget_exceeded", str(exc)
            raise
        except RunStopped as exc:
            outcome, error = "timed_out", str(exc)
            raise
        except BaseException as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            state = self._state(run_dir)
            if outcome == "succeeded" and state.get("state") not in FINAL_RUN_STATES:
                pass  # launch() returned with the trainer running: the pod must stay up
            elif state.get("pod_id") and not state.get("terminated"):
                final = state.get("state") if outcome == "succeeded" else outcome
                with _interrupts_deferred():
                    self._finish(run_dir, final, error or state.get("error"))

    def _finish(self, run_dir: Path, outcome: str, error: str | None) -> None:
        """Stop the trainer, delete the person's data, terminate the pod, record cost and outcome."""
        state = self._state(run_dir)
        pod_id = state["pod_id"]
        cleanup = self._delete_remote_data(run_dir, state)
        seen = self._last_seen(pod_id)
        terminate_error: BackendError | None = None
        try:
            terminate_confirmed(self.api, pod_id, attempts=max(3, self.config.transfer_retries),
                                delay_s=self.config.retry_delay_s, sleep=self._sleep)
        except BackendError as exc:
            terminate_error = exc
        self._close(run_dir)
        self._record_end(run_dir, state, outcome, error, cleanup, seen, terminate_error)
        if terminate_error is not None:
            raise terminate_error

    def _delete_remote_data(self, run_dir: Path, state: Mapping[str, Any]) -> str:
        if not state.get("ssh_host"):
            return "no_connection_made"
        base = _remote_base(self.config, run_dir.name)
        pid = state.get("trainer_pid")
        q = shlex.quote
        kill = (f"kill -TERM -- -{int(pid)} 2>/dev/null && for i in $(seq 50); do "
                f"kill -0 -- -{int(pid)} 2>/dev/null || break; sleep 0.1; done; "
                f"kill -KILL -- -{int(pid)} 2>/dev/null; ") if pid else ""
        link = state.get("base_link")
        unlink = f"[ -L {q(link)} ] && rm -f {q(link)}; " if link else ""
        command = f"{kill}{unlink}rm -rf {q(base)}; test ! -e {q(base)} && echo DELETED"
        try:
            conn = self._connection(run_dir, state)
            out = conn.check(command, what="Deleting the run's data on the pod", timeout_s=300)
            return "deleted" if "DELETED" in out else "not_confirmed"
        except BackendError as exc:
            self._event(run_dir, "remote_cleanup_failed", error=str(exc))
            return "unreachable_pod_terminated_with_its_disk"

    def _last_seen(self, pod_id: str) -> PodInfo | None:
        try:
            return self.api.get(pod_id)
        except BackendError:
            return None

    def _record_end(self, run_dir: Path, state: Mapping[str, Any], outcome: str, error: str | None,
                    cleanup: str, seen: PodInfo | None, terminate_error: BackendError | None) -> None:
        now = self._clock()
        wall_s = max(0.0, now.timestamp() - float(state.get("created_ts") or now.timestamp()))
        hourly = (seen.cost_per_hr if seen and seen.cost_per_hr is not None else state.get("hourly_usd"))
        uptime = seen.uptime_s if seen else None
        cost = round(float(hourly or 0.0) * wall_s / 3600, 4)
        actual = {"backend": "runpod", "gpu_type": state.get("gpu_type"), "cloud_type": state.get("cloud_type"),
                  "hourly_usd": hourly, "uptime_s": uptime, "billed_s": round(wall_s, 1), "usd": cost}
        self._record(run_dir, state=outcome, outcome=outcome, error=error, remote_data=cleanup,
                     terminated=terminate_error is None, terminated_at=_iso(now),
                     terminate_error=str(terminate_error) if terminate_error else None,
                     hourly_usd=hourly, uptime_s=uptime, billed_s=round(wall_s, 1), cost_usd=cost)
        update_manifest(run_dir, lambda manifest: _set_actual_cost(manifest, actual))
        self._event(run_dir, "pod_terminated" if terminate_error is None else "terminate_failed",
                    pod_id=state.get("pod_id"), outcome=outcome, cost_usd=cost, remote_data=cleanup)
        if outcome != "succeeded":
            local = _parse_status((run_dir / "status.json").read_text()) if (run_dir / "status.json").exists() else None
            if not local or local.get("state") not in {"failed", "cancelled"}:
                _write_status(run_dir, "failed" if outcome == "failed" else "cancelled",
                              f"runpod:{outcome}", error)

    def _close(self, run_dir: Path) -> None:
        conn = self._connections.pop(run_dir, None)
        if conn is not None:
            conn.close()

    @staticmethod
    def _local_status(run_dir: Path) -> JobStatus:
        path = Path(run_dir) / "status.json"
        data = _parse_status(path.read_text()) if path.exists() else None
        return _job_status(data) if data else JobStatus(state="pending")


class _BudgetExceeded(RunStopped):
    """Internal marker so the guard records ``budget_exceeded`` rather than ``timed_out``."""


# ==================================================================== helpers

def _require_inputs(run_dir: Path) -> None:
    for name in ("train_config.json", "dataset.jsonl"):
        if not (run_dir / name).is_file():
            raise BackendError(f"{run_dir} has no {name}: prepare the run folder (selection and "
                               "training launch) before sending it to RunPod.")


def trainer_command(config: RunPodConfig, run_dir: Path, remote_run: str) -> list[str]:
    """The trainer's command line on the pod: one process per GPU, as the local backend does.

    One GPU runs the module directly; several run it under ``torch.distributed.run`` (DDP), or
    under ``accelerate launch --use_fsdp`` when the run's config asks for FSDP (full fine-tunes
    too large for one GPU), so a bigger pod needs no code change.
    """
    module = ["-m", config.trainer_module, remote_run]
    if config.gpu_count <= 1:
        return [config.python, *module]
    if read_json(run_dir / "train_config.json").get("distributed") == "fsdp":
        return [config.python, "-m", "accelerate.commands.launch", "--use_fsdp", "--num_processes",
                str(config.gpu_count), "--num_machines", "1", *module]
    return [config.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(config.gpu_count), *module]


def setup_command(config: RunPodConfig, run_dir: Path) -> str:
    """The pod's setup command: ``{python}`` and ``{pins}`` (the run's recorded package versions) filled in."""
    from metahuman_lib.training.software import pip_pins

    software = (read_manifest(run_dir).get("training") or {}).get("software") or {}
    return config.setup_command.replace("{python}", shlex.quote(config.python)).replace("{pins}", pip_pins(software))


def _projection(run_dir: Path, gpu_plan: Any, prices: Any) -> tuple[float | None, float | None]:
    """Projected hours and dollars of the run on the plan's GPU, for the budget check before renting.

    Read from ``manifest.training.estimate`` (``hours``, or ``gpu_hours``) when the launch step recorded
    one; otherwise the cost model projects the run with the plan's settings (checkpointing recomputes)
    and records it there, beside which the real price and uptime are recorded later.
    """
    estimate = (read_manifest(run_dir).get("training") or {}).get("estimate")
    if not isinstance(estimate, dict):
        from metahuman_lib.training.cost import project_run

        try:
            estimate = project_run(run_dir, gpu_plan.gpu, prices=prices,
                                   gradient_checkpointing=gpu_plan.shape.checkpointing).as_dict()
        except ConfigError:
            return None, None
        update_manifest(run_dir, lambda manifest: manifest.setdefault("training", {}).update(estimate=estimate))
    value = estimate.get("hours", estimate.get("gpu_hours"))
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None, None
    dollars = estimate.get("dollars") if estimate.get("gpu") == gpu_plan.gpu else None
    if not isinstance(dollars, (int, float)):
        dollars = float(value) * gpu_plan.price_per_hour
    return float(value), float(dollars)


def _username_of(run_dir: Path) -> str:
    """``profiles/<user>/out/fine-tuned-models/<date>/<label>`` -> ``<user>`` (else ``run``)."""
    parts = run_dir.parts
    if len(parts) >= 5 and parts[-3] == "fine-tuned-models" and parts[-4] == "out":
        return parts[-5]
    return "run"


def _public_key(config: RunPodConfig) -> str:
    path = Path(config.ssh_key).expanduser()
    public = path.with_name(path.name + ".pub")
    if not path.is_file() or not public.is_file():
        raise BackendError(f"SSH key {path} (and {public.name}) not found: create one with "
                           f"ssh-keygen -t ed25519 -f {path}, or set 'runpod.ssh_key'.")
    return public.read_text(encoding="utf-8").strip()


def _volume_models_dir(config: RunPodConfig) -> str:
    return str(PurePosixPath(config.volume_mount_path) / "metahuman" / "models")


def _remote_base(config: RunPodConfig, label: str) -> str:
    return str(PurePosixPath(config.remote_dir) / label)


def _upload_plan(run_dir: Path, remote_base: str) -> tuple[dict[str, Path], dict[str, Any]]:
    """Files to send (``{remote relative path: local path}``) and the pod's train_config.json.

    Local base models and parent weights go too, under ``base/`` and ``parent/``; the config sent
    to the pod points at the uploaded parent, so building on the previous version really happens
    on the pod (defect 8). A local base model keeps its path (see ``_link_base``).
    """
    files: dict[str, Path] = {}
    for path in sorted(run_dir.iterdir()):
        if path.name in _NOT_UPLOADED or path.name.startswith("."):
            continue
        if path.is_file():
            files[f"run/{path.name}"] = path
        elif path.is_dir():
            files.update(tree_files(path, f"run/{path.name}"))
    remote_config = dict(read_json(run_dir / "train_config.json"))
    base = remote_config.get("base_model")
    if isinstance(base, str) and base and Path(base).expanduser().is_dir():
        files.update(tree_files(Path(base).expanduser(), "base"))
    parent = remote_config.get("parent")
    if isinstance(parent, dict) and parent.get("path") and Path(parent["path"]).expanduser().is_dir():
        files.update(tree_files(Path(parent["path"]).expanduser(), "parent"))
        remote_config["parent"] = {**parent, "path": f"{remote_base}/parent", "local_path": parent["path"]}
    files.pop("run/train_config.json", None)
    return files, remote_config


def _parse_json(text: str | None) -> dict[str, Any] | None:
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _merge_training(manifest: dict[str, Any], pod_training: Mapping[str, Any]) -> None:
    """Bring the trainer's record (what was loaded, output checksums) home beside ours."""
    section = manifest.setdefault("training", {})
    for key, value in pod_training.items():
        if key not in ("runpod", "actual_cost"):
            section[key] = value


def _set_actual_cost(manifest: dict[str, Any], actual: dict[str, Any]) -> None:
    """The real price and billed time, beside the training section's estimate."""
    manifest.setdefault("training", {})["actual_cost"] = actual


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def _read_remote(conn: SshConnection, path: str) -> str | None:
    """A small remote text file's content, or None when it does not exist (yet)."""
    try:
        with conn.sftp.open(path, "r") as handle:
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def _process_alive(conn: SshConnection, pid: int | None) -> bool:
    """True while ``/proc/<pid>`` exists on the pod and the process is not a zombie."""
    if not pid:
        return False
    stat = _read_remote(conn, f"/proc/{int(pid)}/stat")
    return stat is not None and stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _parse_status(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return data if isinstance(data, dict) and "state" in data else None


def _job_status(data: Mapping[str, Any]) -> JobStatus:
    known = {"state", "phase", "step", "total_steps", "eta_s", "error"}
    return JobStatus(
        state=str(data.get("state")), phase=str(data.get("phase") or ""),
        step=int(data.get("step") or 0), total_steps=int(data.get("total_steps") or 0),
        eta_s=data.get("eta_s"), error=data.get("error"),
        extra={k: v for k, v in data.items() if k not in known},
    )


def _write_status(run_dir: Path, state: str, phase: str, error: str | None) -> None:
    """A status.json for runs the trainer never finished, so every reader sees what happened."""
    path = Path(run_dir) / "status.json"
    previous = _parse_status(path.read_text()) if path.exists() else None
    data = {**(previous or {}), "state": state, "phase": phase, "error": error,
            "updated_at": _iso(_utc_now())}
    atomic_write_json(path, data)


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold a second Ctrl-C until cleanup and terminate are done, then deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt
