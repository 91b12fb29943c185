import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from _helpers_training import make_run, tiny_model

from metahuman_lib._io import read_json
from metahuman_lib.errors import BackendError
from metahuman_lib.training.backend import get_backend
from metahuman_lib.training.config import TrainConfig, write_train_config
from metahuman_lib.training.local import PID_NAME, LocalBackend, alive_pid
from metahuman_lib.training.status import read_log, write_status

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize(
    ("processes", "distributed", "expected"),
    [
        (1, "ddp", ["-m", "metahuman_lib.training.train"]),
        (2, "ddp", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                    "metahuman_lib.training.train"]),
        (4, "fsdp", ["-m", "accelerate.commands.launch", "--use_fsdp", "--num_processes", "4", "--num_machines",
                     "1", "-m", "metahuman_lib.training.train"]),
    ],
)
def test_get_backend_builds_the_local_backend(tmp_path, processes, distributed, expected):
    write_train_config(tmp_path, TrainConfig(distributed=distributed))
    backend = get_backend("local", num_processes=processes, echo=None)
    assert isinstance(backend, LocalBackend)
    command = backend.command(tmp_path)
    assert command[0] == sys.executable
    assert command[1:] == [*expected, str(tmp_path.resolve())]


def test_launch_needs_a_prepared_run_folder(tmp_path):
    with pytest.raises(BackendError, match=r"has no train_config\.json: prepare the run folder"):
        LocalBackend(echo=None).launch(tmp_path)


def test_local_run_end_to_end(tmp_path_factory, tmp_path):
    make_run(tmp_path, tiny_model(tmp_path_factory))
    lines = []
    backend = LocalBackend(num_processes=1, poll_interval_s=0.2, echo=lines.append)
    backend.launch(tmp_path)
    status = backend.wait(tmp_path, progress=False, timeout_s=180)
    assert status.state == "succeeded", status.error
    assert status.step == status.total_steps > 0
    assert (tmp_path / "output" / "adapter" / "adapter_model.safetensors").exists()
    assert read_json(tmp_path / "metrics.json")["train"]["steps"] == status.step
    assert any("Loading weights" in line for line in lines)
    assert backend.launch(tmp_path).state == "succeeded"  # a finished run is never started again
    assert alive_pid(tmp_path) is None


def test_relaunch_reattaches_then_cancel_and_resume(tmp_path_factory, tmp_path):
    # long enough that the trainer is still running when the test holds it, even on a loaded machine
    make_run(tmp_path, tiny_model(tmp_path_factory), epochs=6, checkpoint_every_steps=1, eval_train_samples=4)
    backend = LocalBackend(num_processes=1, poll_interval_s=0.2, echo=None)
    backend.launch(tmp_path)
    pid = read_json(tmp_path / PID_NAME)["pid"]
    assert LocalBackend(echo=None).launch(tmp_path).state == "running"  # a restarted notebook
    assert read_json(tmp_path / PID_NAME)["pid"] == pid
    wait_for(lambda: (tmp_path / ".scratch" / "checkpoints").is_dir()
             and any((tmp_path / ".scratch" / "checkpoints").glob("*/progress.json")))
    os.killpg(os.getpgid(pid), signal.SIGSTOP)  # hold it mid-run, however fast the machine is

    cancelled = backend.cancel(tmp_path)
    assert (cancelled.state, cancelled.phase) == ("cancelled", "cancelled")
    assert alive_pid(tmp_path) is None

    backend.launch(tmp_path)
    assert read_json(tmp_path / PID_NAME)["pid"] != pid
    final = backend.wait(tmp_path, progress=False, timeout_s=240)
    assert final.state == "succeeded", final.error
    assert read_json(tmp_path / "metrics.json")["train"]["resumed_from_step"] >= 1
    assert [record["step"] for record in read_log(tmp_path)] == list(range(1, final.total_steps + 1))


def test_a_trainer_that_died_silently_is_reported_failed(tmp_path):
    write_train_config(tmp_path, TrainConfig())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / PID_NAME).write_text(json.dumps({"pid": dead.pid, "command": [], "started_at": ""}))
    write_status(tmp_path, state="running", phase="training", step=3, total_steps=9)
    status = LocalBackend(echo=None).poll(tmp_path)
    assert status.state == "failed"
    assert status.error.startswith("the trainer process exited (code None) without finishing; see ")


def test_interrupting_follow_cancels_the_job(tmp_path_factory, tmp_path, ctrl_c):
    """Ctrl-C or a kernel interrupt while a notebook follows a run stops it (a pod stops billing)."""
    from metahuman_lib.training import launch as tl
    from metahuman_lib.training.config import read_train_config

    make_run(tmp_path, tiny_model(tmp_path_factory), epochs=50, checkpoint_every_steps=1)
    plan = tl.LaunchPlan(tmp_path, read_train_config(tmp_path), False, "")
    tl.launch(plan, "local", echo=None)
    pid = read_json(tmp_path / PID_NAME)["pid"]
    wait_for(lambda: LocalBackend(echo=None).poll(tmp_path).step >= 1)
    import ipywidgets  # noqa: F401 - loaded before the interrupt is armed, as in a notebook: on a busy
    # machine its first import outlasts the 0.3 s and the interrupt would land inside it
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        tl.follow(plan, "local", poll_s=0.05, echo=None)
    timer.join()
    assert LocalBackend(echo=None).poll(tmp_path).state == "cancelled"
    assert alive_pid(tmp_path) is None
    assert read_json(tmp_path / PID_NAME)["pid"] == pid  # the same job was followed, then stopped
