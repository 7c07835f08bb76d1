"""A node agent for the test bed: a small kubelet that runs pods' commands in network namespaces.

It registers a Node (and renews its Lease), and for every pod the scheduler binds to it:
creates a network namespace with the pod's own address, resolves the image to a local runtime
(the project's H2O image -> this machine's ``java`` and the ``h2o.jar`` of the pinned client;
any other image -> ``ErrImagePull``/``ImagePullBackOff``), runs the container's command with
the pod's environment (``fieldRef`` and ``secretKeyRef`` values included) and its memory limit
as the JVM's ``-XX:MaxRAM``, probes readiness exactly as the pod's ``readinessProbe`` says, and
reports IP, phase, container states and conditions to the API server. A container that exits
is reported as terminated, then ``CrashLoopBackOff``. When a pod is deleted it stops the
process (by its pid), removes the namespace and confirms the deletion.

It also serves the kubelet's port-forward endpoint (``testbed.kubelet``) on the Node's
InternalIP, so ``pods/portforward`` through the API server reaches the pods.

Volumes are directories of the pod's own: ``emptyDir`` empty, ``secret`` with the Secret's keys
written as files (``items`` and ``defaultMode`` honoured), both group-owned by ``fsGroup``.

The pod's and container's ``securityContext`` are enforced as a container runtime would: the
command runs as ``runAsUser``/``runAsGroup`` with ``fsGroup`` as a supplementary group
(``setpriv``), without new privileges and with every capability dropped when the manifest says
so, and with a read-only root file system (a private mount namespace where ``/`` is remounted
read-only and only the writable volumes are mounted read-write). ``runAsNonRoot`` with no
non-root user refuses to start the container (``CreateContainerConfigError``).

What it does not emulate: image contents, cgroups (beyond the JVM's MaxRAM), seccomp.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testbed.kubelet import KubeletServer
from testbed.network import PodNetwork

H2O_IMAGE_PREFIX = "h2o-airflow/h2o:"
H2O_JAR_IN_IMAGE = "/opt/h2o/h2o.jar"
BACKOFF_S = 10.0


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _image_file(path: Path, image_dir: Path) -> Path:
    """``path`` as a file of the "image", where the pods' users can read it (the repository may sit under
    a directory only its owner enters): a hard link, or a copy across file systems."""
    import shutil
    import stat

    image_dir.mkdir(parents=True, exist_ok=True)
    target = image_dir / path.name
    if not target.exists():
        if path.stat().st_mode & stat.S_IROTH:  # a link shares the mode: link only what all may read already
            try:
                os.link(path, target)
                return target
            except OSError:
                pass  # another file system
        shutil.copyfile(path, target)
        target.chmod(0o644)  # the copy, never the source
    return target


def _quantity_bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, mult in units.items():
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * mult)
    return int(q)


@dataclass(frozen=True)
class Security:
    """The effective ``securityContext`` of a container (the container's settings over the pod's)."""

    uid: int | None = None
    gid: int | None = None
    fs_group: int | None = None
    non_root: bool = False
    read_only_root: bool = False
    no_new_privs: bool = False
    drop_all: bool = False

    @classmethod
    def of(cls, pod: dict[str, Any], container: dict[str, Any]) -> Security:
        p, c = pod["spec"].get("securityContext") or {}, container.get("securityContext") or {}

        def pick(key: str) -> Any:
            return c.get(key, p.get(key))

        drops = [d.upper() for d in ((c.get("capabilities") or {}).get("drop") or [])]
        return cls(uid=pick("runAsUser"), gid=pick("runAsGroup"), fs_group=p.get("fsGroup"),
                   non_root=bool(pick("runAsNonRoot")), read_only_root=bool(c.get("readOnlyRootFilesystem")),
                   no_new_privs=c.get("allowPrivilegeEscalation") is False, drop_all="ALL" in drops)

    def refusal(self) -> str:
        """Why a runtime would not start the container ('' when it would)."""
        if self.non_root and not self.uid:
            return "container has runAsNonRoot and image will run as root"
        return ""

    def wrap(self, argv: list[str], writable: list[str]) -> list[str]:
        """``argv`` run under this context: its user and groups, privileges, and a read-only root."""
        if self.uid is not None or self.gid is not None or self.fs_group is not None:
            groups = sorted({g for g in (self.gid, self.fs_group) if g is not None})
            argv = ["setpriv", "--reuid", str(self.uid or 0), "--regid", str(self.gid if self.gid is not None else 0),
                    *(["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]),
                    *(["--no-new-privs"] if self.no_new_privs else []),
                    *(["--inh-caps", "-all", "--bounding-set", "-all"] if self.drop_all else []), "--", *argv]
        if self.read_only_root:
            binds = "".join(f'mount --bind "{d}" "{d}" && ' for d in writable)
            argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                    f'{binds}mount -o remount,bind,ro / && exec "$@"', "sh", *argv]
        return argv


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of a command argument: ``$(VAR)`` is the container's variable (left as it
    is when the container has none), ``$$`` a literal ``$``."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), arg)


@dataclass
class PodRun:
    uid: str
    name: str
    namespace: str
    netns: str = ""
    ip: str = ""
    proc: subprocess.Popen | None = None
    started_at: str = ""
    ready: bool = False
    restarts: int = 0
    last_exit: dict[str, Any] | None = None
    backoff_until: float = 0.0
    next_probe: float = 0.0
    image_error: str = ""
    home: str = ""
    reported: dict[str, Any] = field(default_factory=dict)


class NodeAgent:
    """
    :param api_client: a ``kubernetes.client.ApiClient`` with rights over nodes, pods, leases.
    :param network: the pod network (created by the caller).
    :param workdir: the agent's logs and the containers' logs.
    :param h2o_jar: the local ``h2o.jar`` that stands for the H2O image's.
    :param pods_root: where pods' directories (volumes, working directories) and the image's jar live; every parent
        must be traversable by the pods' users (a kubelet's ``/var/lib/kubelet``). Default: ``workdir``.
    """

    def __init__(
        self,
        api_client: Any,
        network: PodNetwork,
        workdir: Path,
        h2o_jar: Path,
        node_name: str = "node-1",
        cpu: str = "8",
        memory: str = "20Gi",
        java: str = "java",
        poll_s: float = 0.25,
        kubelet_port: int = 10250,
        kubelet_client_ca: str | None = None,
        cluster_domain: str = "cluster.local",
        pods_root: Path | None = None,
    ):
        from kubernetes import client

        self.cluster_domain = cluster_domain  # the kubelet's --cluster-domain: the pods' DNS search path

        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.coord = client.CoordinationV1Api(api_client)
        self.network = network
        self.workdir = Path(workdir)
        self.pods_root = Path(pods_root or workdir)
        self.h2o_jar = _image_file(Path(h2o_jar), self.pods_root / "image")
        self.node = node_name
        self.cpu = cpu
        self.memory = memory
        self.java = java
        self.poll_s = poll_s
        self.pods: dict[str, PodRun] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_heartbeat = 0.0
        self.kubelet_port = kubelet_port
        # the CA that signed the API server's kubelet client certificate: the cluster CA
        self.kubelet_client_ca = kubelet_client_ca or api_client.configuration.ssl_ca_cert
        self.kubelet: KubeletServer | None = None

    # ------------------------------------------------------------------ node
    def register(self) -> None:
        from kubernetes.client.exceptions import ApiException

        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux"}},
        }
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        self.heartbeat(force=True)

    def heartbeat(self, force: bool = False) -> None:
        from kubernetes.client.exceptions import ApiException

        if not force and time.monotonic() - self._last_heartbeat < 5:
            return
        self._last_heartbeat = time.monotonic()
        ts = now()
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": "110"}
        self.core.patch_node_status(
            self.node,
            {
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "addresses": [{"type": "InternalIP", "address": self.network.host_ip}, {"type": "Hostname", "address": self.node}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet.port if self.kubelet else 0}},
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "test bed node agent is posting ready status",
                            "lastHeartbeatTime": ts,
                            "lastTransitionTime": ts,
                        }
                    ],
                    "nodeInfo": {
                        "kubeletVersion": "v0-testbed",
                        "containerRuntimeVersion": "netns://testbed",
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "osImage": "testbed",
                        "kernelVersion": os.uname().release,
                        "kubeProxyVersion": "",
                        "machineID": "",
                        "systemUUID": "",
                        "bootID": "",
                    },
                }
            },
        )
        lease = {
            "metadata": {"name": self.node, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node,
                "leaseDurationSeconds": 40,
                "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
        try:
            self.coord.patch_namespaced_lease(self.node, "kube-node-lease", {"spec": lease["spec"]})
        except ApiException as exc:
            if exc.status != 404:
                raise
            with contextlib.suppress(ApiException):
                self.coord.create_namespaced_lease("kube-node-lease", lease)

    # ------------------------------------------------------------------ pods
    def _env(self, pod: dict[str, Any], container: dict[str, Any], run: PodRun) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": run.home}
        meta = pod["metadata"]
        fields = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "status.podIP": run.ip,
            "spec.nodeName": self.node,
            "status.hostIP": self.network.host_ip,
        }
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"]
                continue
            src = e.get("valueFrom") or {}
            if "fieldRef" in src:
                env[e["name"]] = fields.get(src["fieldRef"]["fieldPath"], "")
            elif "secretKeyRef" in src:
                ref = src["secretKeyRef"]
                try:
                    import base64

                    secret = self.core.read_namespaced_secret(ref["name"], meta["namespace"])
                    env[e["name"]] = base64.b64decode((secret.data or {})[ref["key"]]).decode()
                except Exception:
                    if not ref.get("optional"):
                        raise
        return env

    def _pod_dir(self, run: PodRun) -> Path:
        return self.pods_root / run.uid

    def _secret_volume(self, source: dict[str, Any], namespace: str, host: Path, fs_group: int | None) -> None:
        """Write a ``secret`` volume's files (its ``items``, or every key) with their ``defaultMode``, as the
        kubelet does; a missing Secret raises (the kubelet's FailedMount: the pod does not start)."""
        import base64

        secret = self.core.read_namespaced_secret(source["secretName"], namespace)
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        items = source.get("items") or [{"key": k, "path": k} for k in sorted(data)]
        for item in items:
            path = host / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
            if fs_group is not None:
                os.chown(path, 0, fs_group)
            path.chmod(int(item.get("mode", source.get("defaultMode", 0o644))))

    def _argv(self, pod: dict[str, Any], container: dict[str, Any], run: PodRun, env: dict[str, str]) -> list[str]:
        mounts = {}
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        security = Security.of(pod, container)
        writable = []
        for m in container.get("volumeMounts") or []:
            host = self._pod_dir(run) / "volumes" / m["name"]
            host.mkdir(parents=True, exist_ok=True)
            if security.fs_group is not None:  # the volume's group is fsGroup, new files inherit it
                os.chown(host, 0, security.fs_group)
                host.chmod(0o2775)
            if "secret" in volumes.get(m["name"], {}):
                self._secret_volume(volumes[m["name"]]["secret"], pod["metadata"]["namespace"], host,
                                    security.fs_group)
            elif not m.get("readOnly"):
                writable.append(str(host))
            mounts[m["mountPath"].rstrip("/")] = str(host)
        argv = [expand(a, env) for a in (*(container.get("command") or []), *(container.get("args") or []))]
        out = []
        for arg in argv:
            # one mount per argument, the longest first: a host path may itself start with a mount path
            for path, host in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                if arg == path or arg.startswith(path + "/"):
                    arg = host + arg[len(path) :]
                    break
                if f"={path}" in arg:
                    arg = arg.replace(f"={path}", f"={host}")
                    break
            # the image's files last: a host path may itself start with a mount path (/tmp/...)
            out.append(arg.replace(H2O_JAR_IN_IMAGE, str(self.h2o_jar)))
        if out and out[0] == "java":
            out[0] = self.java
            limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            if limit:  # what the container's cgroup would tell the JVM
                out.insert(1, f"-XX:MaxRAM={_quantity_bytes(limit)}")
        run.home = mounts.get("/data", str(self._pod_dir(run)))  # the image's WORKDIR and the h2o user's home
        return security.wrap(out, writable)

    def _start(self, pod: dict[str, Any], run: PodRun) -> None:
        container = pod["spec"]["containers"][0]
        image = container.get("image", "")
        if not image.startswith(H2O_IMAGE_PREFIX):
            run.image_error = "ErrImagePull" if not run.image_error else "ImagePullBackOff"
            self.event(pod, "Failed", f'Failed to pull image "{image}": not available on this node', "Warning")
            return
        meta = pod["metadata"]
        if not run.netns:
            d = self.cluster_domain
            search = [f"{meta['namespace']}.svc.{d}", f"svc.{d}", d]
            run.netns, run.ip = self.network.add_pod(run.uid, search)
        log = self.workdir / run.uid / "container.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        refused = Security.of(pod, container).refusal()
        if refused:
            run.image_error = "CreateContainerConfigError"
            self.event(pod, "Failed", f"Error: {refused}", "Warning")
            return
        try:
            env = self._env(pod, container, run)
        except Exception as exc:  # a Secret the environment names is missing
            run.image_error = "CreateContainerConfigError"
            self.event(pod, "Failed", f"Error: {exc}", "Warning")
            return
        try:
            argv = self._argv(pod, container, run, env)
        except Exception as exc:
            self.event(pod, "FailedMount", f"MountVolume.SetUp failed: {exc}", "Warning")
            return
        with open(log, "ab") as out:
            run.proc = subprocess.Popen(
                ["ip", "netns", "exec", run.netns, *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=run.home,
            )
        run.started_at = now()
        self.event(pod, "Started", f"Started container {container['name']}")
        probe = container.get("readinessProbe") or {}
        run.next_probe = time.monotonic() + float(probe.get("initialDelaySeconds", 0))
        run.ready = False

    def _kill(self, run: PodRun, grace_s: float) -> None:
        proc = run.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _probe(self, pod: dict[str, Any], run: PodRun) -> None:
        probe = pod["spec"]["containers"][0].get("readinessProbe")
        if not probe:
            run.ready = True
            return
        if time.monotonic() < run.next_probe:
            return
        run.next_probe = time.monotonic() + float(probe.get("periodSeconds", 10))
        http = probe.get("httpGet") or {}
        url = f"http://{run.ip}:{http.get('port')}{http.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=float(probe.get("timeoutSeconds", 1))) as resp:
                run.ready = 200 <= resp.status < 400
        except Exception:
            run.ready = False

    def _status(self, pod: dict[str, Any], run: PodRun) -> dict[str, Any]:
        container = pod["spec"]["containers"][0]
        cs: dict[str, Any] = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "restartCount": run.restarts,
            "ready": run.ready,
            "started": False,
        }
        phase = "Pending"
        if run.image_error:
            cs["state"] = {
                "waiting": {"reason": run.image_error, "message": f'image "{container.get("image")}" is not available on this node'
                            if "Image" in run.image_error else Security.of(pod, container).refusal()}
            }
        elif run.proc is not None and run.proc.poll() is None:
            cs["state"] = {"running": {"startedAt": run.started_at}}
            cs["started"] = True
            phase = "Running"
        elif run.backoff_until:
            cs["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off {BACKOFF_S:.0f}s restarting failed container"}}
            phase = "Running"
        if run.last_exit:
            cs["lastState"] = {"terminated": run.last_exit}
        ready = "True" if run.ready else "False"
        ts = now()
        conditions = [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready},
        ]
        for c in conditions:
            prev = run.reported.get(c["type"])
            c["lastTransitionTime"] = prev[1] if prev and prev[0] == c["status"] else ts
        status = {
            "phase": phase,
            "hostIP": self.network.host_ip,
            "conditions": conditions,
            "containerStatuses": [cs],
            "startTime": run.started_at or ts,
        }
        if run.ip:
            status["podIP"] = run.ip
            status["podIPs"] = [{"ip": run.ip}]
        return status

    def _sync_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        run = self.pods.get(uid)
        if meta.get("deletionTimestamp"):
            if run is not None:
                self.event(pod, "Killing", "Stopping container h2o")
                self._kill(run, float(pod["spec"].get("terminationGracePeriodSeconds") or 30))
                self.network.remove_pod(uid)
                del self.pods[uid]
            from kubernetes.client.exceptions import ApiException

            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0)
            return
        if run is None:
            run = self.pods[uid] = PodRun(uid=uid, name=meta["name"], namespace=meta["namespace"])
            self._start(pod, run)
        elif run.image_error == "ErrImagePull":
            self._start(pod, run)  # second "pull" fails too: ImagePullBackOff
        elif run.proc is None and not run.image_error:
            self._start(pod, run)  # a volume could not be mounted (FailedMount): try again
        elif run.proc is not None and run.proc.poll() is not None and not run.backoff_until:
            code = run.proc.returncode
            run.last_exit = {
                "exitCode": code if code >= 0 else 128 - code,
                "reason": "Error",
                "startedAt": run.started_at,
                "finishedAt": now(),
            }
            run.restarts += 1
            run.ready = False
            run.backoff_until = time.monotonic() + BACKOFF_S
            self.event(pod, "BackOff", f"Back-off restarting failed container (exit code {run.last_exit['exitCode']})",
                       "Warning")
        elif run.backoff_until and time.monotonic() >= run.backoff_until:
            run.backoff_until = 0.0
            self._start(pod, run)
        if run.proc is not None and run.proc.poll() is None:
            self._probe(pod, run)
        status = self._status(pod, run)
        key = {k: v for k, v in status.items() if k != "conditions"} | {"ready": [c["status"] for c in status["conditions"]]}
        if key != run.reported.get("_key"):
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
            run.reported = {c["type"]: (c["status"], c["lastTransitionTime"]) for c in status["conditions"]}
            run.reported["_key"] = key

    def sync_once(self) -> None:
        try:
            self.heartbeat()
        except Exception as exc:  # a failed heartbeat must not stop the pods' sync
            (self.workdir / "agent-errors.log").open("a").write(f"{now()} heartbeat: {exc!r}\n")
        pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node}").items
        seen = set()
        for p in pods:
            raw = self.api_client.sanitize_for_serialization(p)
            seen.add(raw["metadata"]["uid"])
            try:
                self._sync_pod(raw)
            except Exception as exc:  # one bad pod must not stop the node
                (self.workdir / "agent-errors.log").open("a").write(f"{now()} {raw['metadata']['name']}: {exc!r}\n")
        for uid in set(self.pods) - seen:  # deleted while we were not looking
            self._kill(self.pods[uid], 5)
            self.network.remove_pod(uid)
            del self.pods[uid]

    def container_log(self, namespace: str, name: str) -> Path | None:
        """The log file of a pod of this node (for ``pods/log``), or None."""
        for run in list(self.pods.values()):
            if run.namespace == namespace and run.name == name:
                return self.workdir / run.uid / "container.log"
        return None

    def event(self, pod: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        """An Event on the pod, as the kubelet posts them (best effort: a failed post is logged)."""
        meta = pod["metadata"]
        stamp = now()
        body = {"metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"kind": "Pod", "name": meta["name"], "namespace": meta["namespace"],
                                   "uid": meta["uid"], "apiVersion": "v1", "fieldPath": "spec.containers{h2o}"},
                "reason": reason, "message": message, "type": kind, "count": 1,
                "firstTimestamp": stamp, "lastTimestamp": stamp,
                "source": {"component": "kubelet", "host": self.node}}
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except Exception as exc:
            (self.workdir / "agent-errors.log").open("a").write(f"{now()} event {reason}: {exc!r}\n")

    def pod_ip(self, namespace: str, name: str) -> str:
        """The address of a running pod of this node (for the kubelet server), or ""."""
        for run in list(self.pods.values()):
            if run.namespace == namespace and run.name == name and run.proc is not None and run.proc.poll() is None:
                return run.ip
        return ""

    def start_kubelet(self) -> None:
        """The kubelet endpoint on the Node's InternalIP (port 10250, or a free one if taken)."""
        kw = {"resolve": self.pod_ip, "client_ca": self.kubelet_client_ca, "cert_dir": self.workdir / "kubelet",
              "log_file": self.workdir / "kubelet.log", "log_file_of": self.container_log}
        try:
            self.kubelet = KubeletServer(self.network.host_ip, self.kubelet_port, **kw)
        except OSError:
            self.kubelet = KubeletServer(self.network.host_ip, 0, **kw)
        self.kubelet.start()

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_kubelet()
        self.register()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.sync_once()
                except Exception as exc:
                    (self.workdir / "agent-errors.log").open("a").write(f"{now()} sync: {exc!r}\n")
                self._stop.wait(self.poll_s)

        self._thread = threading.Thread(target=loop, name=f"node-agent-{self.node}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)
        if self.kubelet:
            self.kubelet.stop()
            self.kubelet = None
        for uid, run in list(self.pods.items()):
            self._kill(run, 5)
            self.network.remove_pod(uid)
        self.pods.clear()

    def pids(self) -> list[int]:
        return [r.proc.pid for r in self.pods.values() if r.proc is not None and r.proc.poll() is None]
