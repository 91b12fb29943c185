"""Real local servers standing in for RunPod in tests: its GraphQL API, a pod's sshd, a flaky link.

* :class:`FakeRunPodApi` answers the exact GraphQL documents the ``runpod`` SDK sends
  (``gpuTypes``, ``podFindAndDeployOnDemand``, ``pod``, ``myself { pods }``, ``podTerminate``),
  checks the bearer key, and records every mutation. Its pods point their ``runtime.ports``
  (private port 22, public IP) at an SSH server on 127.0.0.1.
* :class:`SshServer` runs Debian's OpenSSH ``sshd`` with its own config, host key and
  authorized_keys in a temporary folder, on a free port.
* :class:`FlakyProxy` forwards TCP to the sshd and can cut connections after N bytes, to break
  a transfer mid-way for real.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- sshd

class SshServer:
    """An OpenSSH server on 127.0.0.1 that accepts one client key, for the current user."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.port = free_port()
        self.client_key = self.folder / "id_ed25519"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SshServer:
        if not SSHD.exists():
            raise RuntimeError("OpenSSH server missing: run scripts/install-system-deps.sh "
                               "(Debian: apt-get install openssh-server).")
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "id_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.folder / name)],
                           check=True)
        (self.folder / "authorized_keys").write_text((self.folder / "id_ed25519.pub").read_text())
        config = self.folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1",
            f"HostKey {self.folder / 'host_key'}",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
            f"PidFile {self.folder / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "StrictModes no", "PermitRootLogin prohibit-password", "MaxStartups 50",
            "Subsystem sftp internal-sftp", "LogLevel ERROR", "",
        ]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder
        with open(self.folder / "sshd.log", "wb") as log:
            self.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {(self.folder / 'sshd.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


# --------------------------------------------------------------------------- flaky link

class FlakyProxy:
    """A TCP forwarder that cuts the first ``cuts`` connections after ``cut_after`` bytes upstream."""

    def __init__(self, target_port: int, *, cut_after: int, cuts: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.cuts_done = 0
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> FlakyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        cut = self.cuts_left > 0
        if cut:
            self.cuts_left -= 1
        sent = 0
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        sent += len(data)
                        if cut and sent > self.cut_after:
                            self.cuts_done += 1
                            return
                        upstream.sendall(data)
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


# --------------------------------------------------------------------------- GraphQL API

GPU_TYPES = {
    "NVIDIA GeForce RTX 4090": {"communityPrice": 0.34, "securePrice": 0.69, "memoryInGb": 24},
    "NVIDIA A100 80GB PCIe": {"communityPrice": 1.19, "securePrice": 1.89, "memoryInGb": 80},
    "NVIDIA H100 80GB HBM3": {"communityPrice": 2.69, "securePrice": 2.99, "memoryInGb": 80},
}
NO_INSTANCES = ("There are no longer any instances available with the requested specifications. "
                "Please refresh and try again.")


@dataclass
class FakePod:
    id: str
    name: str
    gpu_type: str
    cloud_type: str
    env: dict[str, str]
    ports: str
    support_public_ip: bool
    created: float
    polls: int = 0
    status: str = "RUNNING"


@dataclass
class FakeRunPodApi:
    """The RunPod GraphQL API, answered locally. Configure failures with the attributes.

    Attributes:
        api_key: the bearer key it accepts (401 otherwise).
        ssh_port: where every pod's "public" port 22 leads (an sshd or a FlakyProxy).
        unavailable: (gpu type, cloud) pairs that answer "no instances available".
        ready_after_polls: ``pod`` queries before runtime.ports appears (-1: never).
        cost_per_hr: overrides the listed price as the pod's costPerHr.
        terminate_failures: how many podTerminate calls fail before one works.
    """

    api_key: str
    ssh_port: int
    unavailable: set[tuple[str, str]] = field(default_factory=set)
    ready_after_polls: int = 1
    cost_per_hr: float | None = None
    terminate_failures: int = 0
    pods: dict[str, FakePod] = field(default_factory=dict)
    mutations: list[dict[str, Any]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    requests_seen: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ server
    def start(self) -> FakeRunPodApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                api.requests_seen.append({"path": self.path, "body": body.decode()})
                if self.headers.get("Authorization") != f"Bearer {api.api_key}":
                    self._send(401, {"errors": [{"message": "Unauthorized"}]})
                    return
                self._send(200, api.answer(json.loads(body)["query"]))

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------ records
    @property
    def created_ids(self) -> list[str]:
        return [m["pod_id"] for m in self.mutations if m["op"] == "podFindAndDeployOnDemand" and m.get("pod_id")]

    @property
    def terminated_ids(self) -> list[str]:
        return [m["pod_id"] for m in self.mutations if m["op"] == "podTerminate" and m.get("ok")]

    def live_pods(self) -> list[FakePod]:
        return [pod for pod in self.pods.values() if pod.status != "TERMINATED"]

    def add_pod(self, name: str, *, gpu_type: str = "NVIDIA A100 80GB PCIe",
                env: dict[str, str] | None = None) -> FakePod:
        """A pod created outside the code under test (an orphan from a crashed process, or not ours)."""
        with self.lock:
            pod = FakePod(f"pod{len(self.pods) + 1:04d}", name, gpu_type, "COMMUNITY", dict(env or {}), "22/tcp",
                          True, time.time(), polls=99)
            self.pods[pod.id] = pod
        return pod

    # ------------------------------------------------------------ GraphQL
    def answer(self, query: str) -> dict[str, Any]:
        with self.lock:
            self.queries.append(query)
            if "podFindAndDeployOnDemand" in query:
                return self._create(query)
            if "podTerminate" in query:
                return self._terminate(query)
            if "gpuTypes(input" in query:
                gpu_id = _field(query, "id")
                gpu = GPU_TYPES.get(gpu_id)
                return {"data": {"gpuTypes": [self._gpu(gpu_id, gpu)] if gpu else []}}
            if "gpuTypes" in query:
                return {"data": {"gpuTypes": [self._gpu(k, v) for k, v in GPU_TYPES.items()]}}
            if re.search(r"\bpod\(input", query):
                pod = self.pods.get(_field(query, "podId"))
                if pod is not None:
                    pod.polls += 1
                return {"data": {"pod": self._pod(pod) if pod and pod.status != "TERMINATED" else None}}
            if "myself" in query and "pods" in query:
                return {"data": {"myself": {"pods": [self._pod(p) for p in self.live_pods()]}}}
            if "myself" in query:
                return {"data": {"myself": {"id": "user", "pubKey": "", "networkVolumes": [
                    {"id": "vol1", "name": "metahuman", "size": 100, "dataCenterId": "EU-RO-1"}]}}}
            return {"errors": [{"message": f"fake RunPod does not know this query: {query[:80]}"}]}

    def _create(self, query: str) -> dict[str, Any]:
        gpu_type, cloud = _field(query, "gpuTypeId"), re.search(r"cloudType: (\w+)", query).group(1)
        record = {"op": "podFindAndDeployOnDemand", "name": _field(query, "name"), "gpu_type": gpu_type,
                  "cloud_type": cloud, "ports": _field(query, "ports"),
                  "support_public_ip": "supportPublicIp: true" in query,
                  "network_volume_id": _field(query, "networkVolumeId"), "query": query}
        self.mutations.append(record)
        if (gpu_type, cloud) in self.unavailable or ("*", cloud) in self.unavailable:
            return {"errors": [{"message": NO_INSTANCES}], "data": {"podFindAndDeployOnDemand": None}}
        env = dict(re.findall(r'\{ key: "([^"]*)", value: "([^"]*)" \}', query))
        pod = FakePod(f"pod{len(self.pods) + 1:04d}", record["name"], gpu_type, cloud, env,
                      record["ports"], record["support_public_ip"], time.time())
        self.pods[pod.id] = pod
        record["pod_id"] = pod.id
        return {"data": {"podFindAndDeployOnDemand": {"id": pod.id, "imageName": "img", "env": [],
                                                      "machineId": "m1", "machine": {"podHostId": "h1"}}}}

    def _terminate(self, query: str) -> dict[str, Any]:
        pod_id = _field(query, "podId")
        record = {"op": "podTerminate", "pod_id": pod_id, "ok": False}
        self.mutations.append(record)
        if self.terminate_failures > 0:
            self.terminate_failures -= 1
            return {"errors": [{"message": "Something went wrong. Please try again later."}]}
        if pod_id in self.pods:
            self.pods[pod_id].status = "TERMINATED"
            record["ok"] = True
        return {"data": {"podTerminate": None}}

    def _gpu(self, gpu_id: str, gpu: dict[str, Any]) -> dict[str, Any]:
        return {"id": gpu_id, "displayName": gpu_id, "maxGpuCount": 8, "secureCloud": True,
                "communityCloud": True, **gpu}

    def _pod(self, pod: FakePod) -> dict[str, Any]:
        ready = self.ready_after_polls >= 0 and pod.polls >= self.ready_after_polls
        price = self.cost_per_hr if self.cost_per_hr is not None else GPU_TYPES[pod.gpu_type][
            "communityPrice" if pod.cloud_type == "COMMUNITY" else "securePrice"]
        runtime = {"ports": [{"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22,
                              "publicPort": self.ssh_port, "type": "tcp"}]} if ready else None
        return {"id": pod.id, "name": pod.name, "desiredStatus": pod.status, "costPerHr": price,
                "uptimeSeconds": int(time.time() - pod.created), "gpuCount": 1,
                "imageName": "img", "runtime": runtime, "machine": {"gpuDisplayName": pod.gpu_type},
                "env": [f"{key}={value}" for key, value in pod.env.items()]}


def _field(query: str, name: str) -> str | None:
    match = re.search(rf'{name}: "([^"]*)"', query)
    return match.group(1) if match else None
