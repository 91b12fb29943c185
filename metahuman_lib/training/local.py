"""Run the trainer on this machine, as a subprocess watched through its run folder.

The run folder is the only state. ``trainer.pid`` records the process (pid, command, start
time); ``launch`` on a run whose recorded process is still alive re-attaches instead of starting
a second trainer, so a restarted notebook simply picks the job up again. Progress comes from
``status.json``; the trainer's output streams from ``trainer.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metahuman_lib._io import atomic_write_json, read_json
from metahuman_lib.errors import BackendError
from metahuman_lib.runfolder import utc_now_iso
from metahuman_lib.training.backend import JobStatus
from metahuman_lib.training.status import read_status, write_status

PID_NAME = "trainer.pid"
LOG_NAME = "trainer.log"


class LocalBackend:
    """The ``local`` backend: ``python -m metahuman_lib.training.train RUN_DIR`` in a subprocess.

    Args:
        num_processes: processes to start; ``"auto"`` = one per visible GPU (1 without GPUs).
            Several processes run under ``torch.distributed.run`` (DDP; gloo on the CPU), or
            under ``accelerate launch --use_fsdp`` when the run's config asks for FSDP.
        python: interpreter for the trainer (default: this one, with this environment).
        poll_interval_s: how often :meth:`wait` reads the status file.
        echo: where streamed log lines go (``print`` by default; ``None`` mutes them).
    """

    name = "local"

    def __init__(self, num_processes: int | str = "auto", python: str | None = None,
                 poll_interval_s: float = 1.0, echo: Callable[[str], Any] | None = print) -> None:
        self.num_processes = num_processes
        self.python = python or sys.executable
        self.poll_interval_s = poll_interval_s
        self.echo = echo
        self._children: dict[Path, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[Path, int] = {}

    def command(self, run_dir: Path) -> list[str]:
        """The command line that runs the trainer for ``run_dir``."""
        run_dir = Path(run_dir).resolve()
        processes = self._resolve_processes()
        module = ["-m", "metahuman_lib.training.train", str(run_dir)]
        if processes <= 1:
            return [self.python, *module]
        if _wants_fsdp(run_dir):
            return [self.python, "-m", "accelerate.commands.launch", "--use_fsdp",
                    "--num_processes", str(processes), "--num_machines", "1", *module]
        return [self.python, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(processes), *module]

    def launch(self, run_dir: Path) -> JobStatus:
        """Start the trainer, or re-attach when its recorded process is alive, or report a finished run."""
        run_dir = Path(run_dir).resolve()
        if not (run_dir / "train_config.json").exists():
            raise BackendError(f"{run_dir} has no train_config.json: prepare the run folder before launching.")
        status = read_status(run_dir)
        if status.state == "succeeded":
            return status
        if alive_pid(run_dir) is not None:
            return self.poll(run_dir)
        self._plan_memory(run_dir)
        command = self.command(run_dir)
        with open(run_dir / LOG_NAME, "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
                                       env=dict(os.environ), start_new_session=True)
        self._children[run_dir] = process
        atomic_write_json(run_dir / PID_NAME, {"pid": process.pid, "command": command,
                                               "started_at": utc_now_iso()})
        write_status(run_dir, state="running", phase="starting", error=None, pid=process.pid)
        return self.poll(run_dir)

    @staticmethod
    def _plan_memory(run_dir: Path) -> None:
        """Refuse what this machine cannot hold; on a GPU, train with the plan's micro-batch and
        checkpointing (same effective batch) unless the run already has checkpoints to resume."""
        from metahuman_lib.runfolder import update_manifest
        from metahuman_lib.training.config import read_train_config, write_train_config
        from metahuman_lib.training.planning import apply_plan, guard_local

        try:
            plan = guard_local(run_dir)
        except BackendError as exc:
            write_status(run_dir, state="failed", phase="planning", error=str(exc))
            raise
        if plan is None or (run_dir / ".scratch" / "checkpoints").is_dir():
            return
        config = read_train_config(run_dir)
        planned = apply_plan(config, plan)
        if planned != config:
            write_train_config(run_dir, planned)
        update_manifest(run_dir, lambda m: m.setdefault("training", {}).update(memory_plan=plan.as_row()))

    def poll(self, run_dir: Path) -> JobStatus:
        """The status file, corrected when the process died without saying so."""
        run_dir = Path(run_dir).resolve()
        child = self._children.get(run_dir)
        if child is not None:
            child.poll()  # reap our own child so it does not linger as a zombie
        status = read_status(run_dir)
        if status.finished or not (run_dir / PID_NAME).exists() or alive_pid(run_dir) is not None:
            return status
        code = child.wait(timeout=10) if child is not None else None
        error = (f"the trainer process exited (code {code}) without finishing; "
                 f"see {run_dir / LOG_NAME}; launch again to resume from the last checkpoint")
        write_status(run_dir, state="failed", error=error, eta_s=None)
        return read_status(run_dir)

    def wait(self, run_dir: Path, *, progress: bool = True, timeout_s: float | None = None) -> JobStatus:
        """Follow the job until it finishes: a tqdm bar of steps, and the log streamed to ``echo``."""
        from tqdm.auto import tqdm

        run_dir = Path(run_dir).resolve()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        bar = tqdm(total=0, unit="step", desc=run_dir.name, disable=not progress)
        try:
            while True:
                status = self.poll(run_dir)
                self._stream_log(run_dir)
                if status.total_steps and bar.total != status.total_steps:
                    bar.reset(total=status.total_steps)
                bar.n = status.step
                bar.set_postfix_str(f"{status.phase} loss={status.extra.get('loss', '-')}", refresh=True)
                if status.finished:
                    self._await_exit(run_dir)
                    self._stream_log(run_dir)
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise BackendError(f"Run {run_dir.name} still {status.state} ({status.phase}, step "
                                       f"{status.step}/{status.total_steps}) after {timeout_s:.0f} s; "
                                       "wait again to keep following it, or cancel it.")
                time.sleep(self.poll_interval_s)
        finally:
            bar.close()

    def cancel(self, run_dir: Path) -> JobStatus:
        """Send SIGTERM to the trainer's process group (SIGKILL after 15 s) and mark the run cancelled."""
        run_dir = Path(run_dir).resolve()
        pid = alive_pid(run_dir)
        if pid is not None:
            _terminate_group(pid, self._children.get(run_dir))
        status = read_status(run_dir)
        if not status.finished:
            write_status(run_dir, state="cancelled", phase="cancelled", eta_s=None,
                         error="cancelled; launch again to resume from the last checkpoint")
        return read_status(run_dir)

    def _await_exit(self, run_dir: Path, timeout_s: float = 60.0) -> None:
        """After the final status, give the trainer time to exit, so the job is truly over."""
        deadline = time.monotonic() + timeout_s
        child = self._children.get(run_dir)
        while time.monotonic() < deadline:
            if child is not None:
                child.poll()
            if alive_pid(run_dir) is None:
                return
            time.sleep(0.1)

    def _resolve_processes(self) -> int:
        if self.num_processes != "auto":
            return int(self.num_processes)
        try:
            import torch
        except ImportError:  # pragma: no cover - the train extra is missing
            return 1
        return max(1, torch.cuda.device_count())

    def _stream_log(self, run_dir: Path) -> None:
        path = run_dir / LOG_NAME
        if self.echo is None or not path.exists():
            return
        offset = self._log_offsets.get(run_dir, 0)
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._log_offsets[run_dir] = offset + len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            self.echo(line)


def alive_pid(run_dir: Path) -> int | None:
    """The recorded trainer pid when that process is alive and really runs this run folder."""
    path = Path(run_dir) / PID_NAME
    if not path.exists():
        return None
    pid = int(read_json(path)["pid"])
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        stat = (proc / "stat").read_text().rsplit(")", 1)[-1].split()
        if stat and stat[0] == "Z":
            return None
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        if str(Path(run_dir).resolve()) not in cmdline:
            return None  # the pid was reused by an unrelated process
    return pid


def _terminate_group(pid: int, child: subprocess.Popen[bytes] | None, grace_s: float = 15.0) -> None:
    """SIGTERM the trainer's whole process group (workers too), SIGKILL it after ``grace_s``."""
    try:
        group = os.getpgid(pid)
        os.killpg(group, signal.SIGTERM)
        os.killpg(group, signal.SIGCONT)  # a stopped (suspended) trainer must wake up to see it
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        return
    if child is not None:
        child.wait(timeout=5)


def _wants_fsdp(run_dir: Path) -> bool:
    return read_json(run_dir / "train_config.json").get("distributed") == "fsdp"
