"""Pod lifecycle on RunPod through its Python SDK: key, create with fallback, readiness, terminate, reap.

The API key is read from ``RUNPOD_API_KEY`` or the SDK's credentials file
(``~/.runpod/config.toml``, profile ``default``) and is held in an :class:`ApiKey` whose
``repr``/``str`` never show it, so it cannot leak into a log line, an exception or a run folder.
Every SDK failure becomes a :class:`~metahuman_lib.errors.BackendError` whose message has the key
scrubbed out (defence in depth: the SDK itself does not print it).
"""

from __future__ import annotations

import os
import re
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metahuman_lib.errors import BackendError, MissingExtraError
from metahuman_lib.training.runpod_config import RunPodConfig

API_KEY_ENV = "RUNPOD_API_KEY"
CREDENTIALS_FILE = Path("~/.runpod/config.toml")
#: desiredStatus values after which a pod no longer bills for its GPU.
GONE_STATUSES = frozenset({"TERMINATED"})
#: The pod environment variable carrying the workbench's mark (also the last part of the pod's name).
RUN_MARK_ENV = "METAHUMAN_WORKBENCH_RUN"
_MARK = re.compile(r"-wb([0-9a-f]{12})$")


class ApiKey:
    """A RunPod API key that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself; only for handing to the SDK."""
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by ``***``."""
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "ApiKey(***)"

    __str__ = __repr__


def resolve_api_key(
    env: Mapping[str, str] | None = None, credentials_file: str | os.PathLike[str] | None = None
) -> ApiKey:
    """The API key from ``RUNPOD_API_KEY``, else from the SDK's credentials file.

    Never a parameter of a run: that way it cannot end up in a parameters file, a papermill
    notebook or a report.
    """
    env = os.environ if env is None else env
    value = (env.get(API_KEY_ENV) or "").strip()
    if value:
        return ApiKey(value)
    path = Path(credentials_file or CREDENTIALS_FILE).expanduser()
    if path.is_file():
        try:
            stored = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BackendError(f"RunPod credentials file {path} is not valid TOML: {exc}.") from None
        value = str(stored.get("default", {}).get("api_key", "")).strip()
        if value:
            return ApiKey(value)
    raise BackendError(
        f"No RunPod API key: set {API_KEY_ENV} in the environment, or run `runpod config` "
        f"to store it in {path}."
    )


@dataclass(frozen=True)
class PodInfo:
    """What the API says about one pod, reduced to what the workbench uses."""

    id: str
    name: str
    desired_status: str
    cost_per_hr: float | None
    uptime_s: float | None
    gpu: str | None
    ssh_host: str | None
    ssh_port: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ssh_ready(self) -> bool:
        """True once RunPod has mapped the pod's port 22 to a public IP and port."""
        return bool(self.ssh_host and self.ssh_port)

    @classmethod
    def from_api(cls, pod: Mapping[str, Any]) -> PodInfo:
        host, port = _public_ssh(pod.get("runtime") or {})
        machine = pod.get("machine") or {}
        cost = pod.get("costPerHr")
        uptime = pod.get("uptimeSeconds")
        return cls(
            id=str(pod["id"]),
            name=str(pod.get("name") or ""),
            desired_status=str(pod.get("desiredStatus") or ""),
            cost_per_hr=float(cost) if cost is not None else None,
            uptime_s=float(uptime) if uptime is not None else None,
            gpu=machine.get("gpuDisplayName"),
            ssh_host=host,
            ssh_port=port,
            raw=dict(pod),
        )


def _public_ssh(runtime: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """The public IP and port mapped to the pod's TCP port 22 ("full SSH"), if any."""
    for port in runtime.get("ports") or []:
        if port.get("privatePort") == 22 and port.get("isIpPublic") and port.get("type") == "tcp":
            return str(port["ip"]), int(port["publicPort"])
    return None, None


class PodApi:
    """The few SDK calls the workbench makes, with errors turned into one-line BackendErrors.

    The SDK keeps its key in a module global (``runpod.api_key``); it is set right before each
    call and the base URL comes from ``RUNPOD_API_BASE_URL`` (read by the SDK on every call).
    """

    def __init__(self, api_key: ApiKey) -> None:
        self._key = api_key

    @contextmanager
    def _sdk(self, action: str) -> Iterator[Any]:
        try:
            import runpod
        except ImportError as exc:  # pragma: no cover - the cloud extra is part of the test env
            raise MissingExtraError("cloud", "runpod") from exc
        runpod.api_key = self._key.reveal()
        try:
            yield runpod
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - SDK, requests and GraphQL errors all land here
            message = self._key.scrub(f"{type(exc).__name__}: {exc}")
            raise BackendError(f"RunPod API call '{action}' failed: {message}") from None

    def gpu(self, gpu_type: str) -> dict[str, Any]:
        """Prices and availability of one GPU type."""
        with self._sdk("get_gpu") as runpod:
            return runpod.get_gpu(gpu_type)

    def create(self, *, name: str, gpu_type: str, cloud_type: str, config: RunPodConfig,
               env: Mapping[str, str]) -> PodInfo:
        """Create an on-demand pod with a public IP and 22/tcp exposed (full SSH)."""
        with self._sdk("create_pod") as runpod:
            created = runpod.create_pod(
                name=name, image_name=config.image, gpu_type_id=gpu_type, cloud_type=cloud_type,
                support_public_ip=True, start_ssh=True, gpu_count=config.gpu_count,
                volume_in_gb=0, container_disk_in_gb=config.container_disk_gb,
                min_memory_in_gb=config.min_memory_gb, ports="22/tcp",
                volume_mount_path=config.volume_mount_path, env=dict(env),
                network_volume_id=config.network_volume_id,
            )
        if not created or not created.get("id"):
            raise BackendError(f"RunPod create_pod returned no pod for {gpu_type} on {cloud_type}.")
        return PodInfo.from_api({"name": name, **created})

    def get(self, pod_id: str) -> PodInfo | None:
        """The pod, or None when RunPod no longer knows it (terminated)."""
        with self._sdk("get_pod") as runpod:
            pod = runpod.get_pod(pod_id)
        return PodInfo.from_api(pod) if pod else None

    def list(self) -> list[PodInfo]:
        """Every pod of the account."""
        with self._sdk("get_pods") as runpod:
            return [PodInfo.from_api(pod) for pod in runpod.get_pods() or []]

    def terminate(self, pod_id: str) -> None:
        """Terminate (delete) a pod; its container disk goes with it."""
        with self._sdk("terminate_pod") as runpod:
            runpod.terminate_pod(pod_id)


# --------------------------------------------------------------------------- names

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def new_run_mark() -> str:
    """A fresh mark for one rental: 12 random hex digits, recorded in the run folder."""
    import secrets

    return secrets.token_hex(6)


def pod_name(prefix: str, username: str, run_label: str, mark: str | None = None) -> str:
    """``<prefix>-<user>-<run-label>[-wb<mark>]``: recognisable, safe inside the SDK's GraphQL string,
    and carrying the workbench's mark at its end."""
    parts = [_NAME_UNSAFE.sub("-", part).strip("-") for part in (prefix, username, run_label)]
    tail = f"-wb{mark}" if mark else ""
    return "-".join(part for part in parts if part)[: 191 - len(tail)] + tail


def pod_mark(pod: PodInfo) -> str | None:
    """The workbench's mark on a pod: the end of its name, else its environment; None when unmarked."""
    found = _MARK.search(pod.name)
    if found:
        return found.group(1)
    env = pod.raw.get("env") or []
    pairs = env.items() if isinstance(env, Mapping) else (
        (item.get("key"), item.get("value")) if isinstance(item, Mapping) else str(item).partition("=")[::2]
        for item in env)
    return next((str(value) for key, value in pairs if key == RUN_MARK_ENV and value), None)


# --------------------------------------------------------------------------- create

@dataclass(frozen=True)
class CreateAttempt:
    """One try at renting a pod: the GPU type, the cloud, and why it did not work (or ``created``)."""

    gpu_type: str
    cloud_type: str
    result: str
    message: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"gpu_type": self.gpu_type, "cloud_type": self.cloud_type,
                "result": self.result, "message": self.message}


def listed_price(gpu: Mapping[str, Any], cloud_type: str) -> float | None:
    """The on-demand hourly price RunPod lists for a GPU type in a cloud."""
    key = "communityPrice" if cloud_type == "COMMUNITY" else "securePrice"
    value = gpu.get(key)
    return float(value) if value else None


def create_pod_with_fallback(
    api: PodApi, config: RunPodConfig, name: str, env: Mapping[str, str],
    on_created: Callable[[PodInfo, str, str], None], *, estimate_hours: float | None = None,
) -> tuple[PodInfo, list[CreateAttempt]]:
    """Rent the first available (GPU type, cloud) pair, in the configured order.

    ``on_created(pod, gpu_type, cloud_type)`` runs as soon as a pod exists, before anything else
    can fail, so the caller records the pod id (and can always terminate it). With an estimate of
    the run's hours, a pair whose listed price would take the run over ``budget_usd`` is skipped,
    and an estimate over ``budget_hours`` rents nothing at all.
    """
    if estimate_hours is not None and estimate_hours > config.budget_hours:
        raise BackendError(f"The run is estimated at {estimate_hours:.2f} h, over the "
                           f"{config.budget_hours:g} h budget ('runpod.budget_hours'); no pod was rented.")
    attempts: list[CreateAttempt] = []
    for gpu_type in config.gpu_types:
        try:
            gpu = api.gpu(gpu_type)
        except BackendError as exc:
            attempts.extend(CreateAttempt(gpu_type, c, "unknown_gpu_type", str(exc)) for c in config.cloud_types)
            continue
        for cloud_type in config.cloud_types:
            price = listed_price(gpu, cloud_type)
            if config.max_hourly_usd is not None and price is not None and price > config.max_hourly_usd:
                attempts.append(CreateAttempt(gpu_type, cloud_type, "over_max_price",
                                              f"${price:.2f}/h > ${config.max_hourly_usd:.2f}/h"))
                continue
            if estimate_hours is not None and price is not None and price * estimate_hours > config.budget_usd:
                attempts.append(CreateAttempt(gpu_type, cloud_type, "over_budget",
                                              f"{estimate_hours:.2f} h x ${price:.2f}/h > ${config.budget_usd:.2f}"))
                continue
            try:
                pod = api.create(name=name, gpu_type=gpu_type, cloud_type=cloud_type,
                                 config=config, env=env)
            except BackendError as exc:
                attempts.append(CreateAttempt(gpu_type, cloud_type, "unavailable", str(exc)))
                continue
            attempts.append(CreateAttempt(gpu_type, cloud_type, "created", pod.id))
            on_created(pod, gpu_type, cloud_type)
            return pod, attempts
    tried = "; ".join(f"{a.gpu_type} / {a.cloud_type}: {a.result}" for a in attempts)
    raise BackendError(f"No RunPod pod could be created ({tried}). Add GPU types to "
                       "'runpod.gpu_types', allow SECURE in 'runpod.cloud_types', or try later.")


def wait_until_mapped(api: PodApi, pod_id: str, *, timeout_s: float, interval_s: float,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> PodInfo:
    """Poll the pod until RunPod reports a public IP and port for 22/tcp."""
    deadline = clock() + timeout_s
    while True:
        pod = api.get(pod_id)
        if pod is None:
            raise BackendError(f"Pod {pod_id} disappeared while starting (RunPod no longer lists it).")
        if pod.ssh_ready:
            return pod
        if clock() >= deadline:
            raise BackendError(
                f"Pod {pod_id} had no public SSH port after {timeout_s:.0f} s; not every machine "
                "offers a public IP: try another GPU type or cloud, or raise 'runpod.ready_timeout_s'."
            )
        sleep(interval_s)


def terminate_confirmed(api: PodApi, pod_id: str, *, attempts: int, delay_s: float,
                        sleep: Callable[[float], None] = time.sleep) -> None:
    """Terminate and check RunPod no longer lists the pod as live; retry API hiccups."""
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            api.terminate(pod_id)
            pod = api.get(pod_id)
            if pod is None or pod.desired_status in GONE_STATUSES:
                return
            last = BackendError(f"pod {pod_id} still reports {pod.desired_status}")
        except BackendError as exc:
            last = exc
        if attempt + 1 < attempts:
            sleep(delay_s)
    raise BackendError(
        f"Could not terminate pod {pod_id} ({last}). It may still be billing: run "
        "`metahuman pods reap` or terminate it in the RunPod console."
    )


# --------------------------------------------------------------------------- orphans

@dataclass(frozen=True)
class PodClaim:
    """A run folder that rented a pod under a mark, and what state it left that pod in."""

    run_dir: Path
    state: str
    terminated: bool
    pod_id: str | None = None
    current: bool = True

    @property
    def active(self) -> bool:
        """True while the run may still be using the pod (its current pod, never terminated by us)."""
        return self.current and not self.terminated and self.state not in FINAL_RUN_STATES


FINAL_RUN_STATES = frozenset({"succeeded", "failed", "cancelled", "interrupted", "timed_out",
                              "budget_exceeded", "lost"})


def find_claims(root: Path) -> dict[str, PodClaim]:
    """Mark -> the run folder under ``root`` that rented a pod with it (its current and earlier pods)."""
    from metahuman_lib._io import read_json

    claims: dict[str, PodClaim] = {}
    pattern = "profiles/*/out/fine-tuned-models/*/*/manifest.json"
    for manifest in sorted(Path(root).glob(pattern)):
        try:
            section = (read_json(manifest).get("training") or {}).get("runpod") or {}
        except (OSError, ValueError):
            continue
        for old in section.get("previous_pods") or []:
            if isinstance(old, Mapping) and old.get("run_mark"):
                claims[old["run_mark"]] = PodClaim(manifest.parent, str(old.get("state") or ""),
                                                   bool(old.get("terminated")), old.get("pod_id"), current=False)
        if section.get("run_mark"):
            claims[section["run_mark"]] = PodClaim(manifest.parent, str(section.get("state", "")),
                                                   bool(section.get("terminated")), section.get("pod_id"))
    return claims


@dataclass(frozen=True)
class ReapDecision:
    """What ``pods reap`` does with a pod, and why: ``terminate``, ``keep`` or ``not_ours``."""

    pod: PodInfo
    action: str
    reason: str
    claim: PodClaim | None = None


def plan_reap(pods: list[PodInfo], claims: Mapping[str, PodClaim], *, include_active: bool) -> list[ReapDecision]:
    """A decision for every live pod of the account.

    A pod is the workbench's only when it carries a mark that a run folder under the root recorded;
    every other pod (a MetaHuman OS server named ``metahuman-...``, someone's notebook) is
    ``not_ours`` and never touched. Ours are orphans, to terminate, when their run finished, or when
    the run moved on to another pod; the current pod of a run in progress is kept unless
    ``include_active``.
    """
    decisions = []
    for pod in pods:
        if pod.desired_status in GONE_STATUSES:
            continue
        mark = pod_mark(pod)
        claim = claims.get(mark) if mark else None
        if claim is None:
            why = "no workbench mark" if mark is None else "its mark is in no run folder under this root"
            decisions.append(ReapDecision(pod, "not_ours", why))
        elif not claim.current or (claim.pod_id and claim.pod_id != pod.id):
            decisions.append(ReapDecision(pod, "terminate", "run_moved_to_another_pod", claim))
        elif not claim.active:
            decisions.append(ReapDecision(pod, "terminate", f"run_finished_{claim.state or 'unknown'}", claim))
        elif include_active:
            decisions.append(ReapDecision(pod, "terminate", "active_run_reaped_on_request", claim))
        else:
            decisions.append(ReapDecision(pod, "keep", "claimed_by_active_run", claim))
    return decisions
