"""The ``local`` backend: N H2O JVMs on this machine forming one real multi-node cloud.

Nodes find each other through a flatfile on loopback, each on its own port pair. The
cluster outlives the process that created it (like pods outlive the task that applied
them): its state lives in ``<state_dir>/clusters/<name>/state.json`` so another process
(the delete task, the janitor) can find and stop exactly the JVMs that were started. A small
watchdog process per cluster (:mod:`h2o_tasks.cluster.watchdog`) stops the JVMs once the
cluster's ceiling has passed, so nothing outlives ``cluster.max_run_minutes`` even with
Airflow down. The state and the watchdog exist before the first JVM starts, and a delete
also finds JVMs by their flatfile, so a creator killed between any two lines leaks nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from h2o_tasks import testhooks
from h2o_tasks.cluster.base import ClusterInfo, ClusterSpec, ClusterStatus, extended_expiry, polled
from h2o_tasks.cluster.login import Login, read_private, write_private
from h2o_tasks.cluster.readiness import decide, fetch_cloud, poll_until_ready
from h2o_tasks.errors import ClusterError

HOST = "127.0.0.1"
CLAIM_TIMEOUT_S = 120.0  # a create starts processes and a delete waits 25 s at most: a longer claim is stuck


def default_state_dir() -> Path:
    return Path(os.environ.get("H2O_AIRFLOW_STATE_DIR") or Path(tempfile.gettempdir()) / "h2o-airflow")


def h2o_jar() -> Path:
    """The ``h2o.jar`` shipped with the installed ``h2o`` client (same version by construction)."""
    if os.environ.get("H2O_JAR"):
        return Path(os.environ["H2O_JAR"])
    import importlib.util

    spec = importlib.util.find_spec("h2o")  # located, not imported: importing h2o costs ~1 s before the JVMs start
    if spec is None or spec.origin is None:
        raise ClusterError("the h2o package is not installed: install h2o==3.46.0.11 or set H2O_JAR", reason="NoJar")
    return Path(spec.origin).parent / "backend" / "bin" / "h2o.jar"


@dataclass
class NodeState:
    pid: int
    port: int
    log: str


@dataclass
class LocalState:
    name: str
    replicas: int
    nodes: list[NodeState]
    created_at: str
    expires_at: str
    labels: dict[str, str]
    ceiling_at: str = ""
    dag_id: str = ""
    run_id: str = ""
    watchdog_pid: int = 0
    ports: list[int] = field(default_factory=list)  # every node's, recorded before the first starts
    extended_at: str = ""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.ports[0] if self.ports else self.nodes[0].port}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LocalState:
        raw = json.loads(text)
        raw["nodes"] = [NodeState(**n) for n in raw["nodes"]]
        return cls(**raw)


def _port_pair_free(port: int) -> bool:
    for p in (port, port + 1):
        with socket.socket() as s:
            try:
                s.bind((HOST, p))
            except OSError:
                return False
    return True


def ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _pick_ports(count: int) -> list[int]:
    """``count`` API ports, each with its internal port (+1) free.

    Random, and below the kernel's ephemeral range: a JVM takes seconds to bind, and an
    outgoing connection must not take its port in the meantime.
    """
    ports: list[int] = []
    rng = random.Random()
    high = min(ephemeral_low(), 60000) - 2
    for _ in range(2000):
        p = rng.randrange(10000, high, 2)
        if p not in ports and _port_pair_free(p):
            ports.append(p)
            if len(ports) == count:
                return ports
    raise ClusterError(f"no {count} free port pairs on {HOST}", retryable=True, reason="NoPorts")


def _proc_state(pid: int) -> str:
    """'' if gone, else the /proc state letter (Z for a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def _is_ours(pid: int, name: str) -> bool:
    """The pid is alive and is a JVM of this cluster (never signal a recycled pid).

    The ``java`` launcher may re-exec itself right after start, when its command line reads
    empty for a moment: that case is read again rather than taken for a stranger.
    """
    for _ in range(20):
        if _proc_state(pid) in ("", "Z"):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if argv != [b""]:
            return b"-name" in argv and name.encode() in argv
        time.sleep(0.05)
    return False


def _is_watchdog(pid: int, name: str) -> bool:
    """The pid is this cluster's watchdog (never signal a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"h2o_tasks.cluster.watchdog" in argv and name.encode() in argv


def command_lines() -> Iterator[tuple[int, list[bytes]]]:
    """``(pid, argv)`` of every process of this machine whose command line can be read."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            yield int(proc.name), (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue


def _jvms_started_in(workdir: Path) -> list[int]:
    """The pids of every live process whose command line names this cluster's flatfile: its JVMs,
    recorded in its state or not (the path holds the state directory and the cluster's name)."""
    flatfile = str(workdir / "flatfile.txt").encode()
    return [pid for pid, argv in command_lines()
            if any(a == b"-flatfile" and b == flatfile for a, b in itertools.pairwise(argv))]


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _lock(path: Path, deadline: float, name: str, timeout_s: float) -> int:
    """Open ``path`` and ``flock`` it, waiting until ``deadline``; return the descriptor. Retried when
    the file was removed or replaced between the open and the lock (its last holder removes it)."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ClusterError(f"cluster {name} stayed claimed by another process for {timeout_s:.0f}s "
                                           f"({path}): a create or delete of it still runs; "
                                           "retry the task once it ends", retryable=True, reason="Busy") from None
                    time.sleep(0.1)
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # locked a removed file: take the path's current one


class LocalBackend:
    """See the module docstring. ``state_dir`` defaults to ``$H2O_AIRFLOW_STATE_DIR``."""

    name = "local"
    login_patience_s = 0.0  # a file on this machine: read at once

    def __init__(self, state_dir: str | Path | None = None, java: str = "java", s3_endpoint: str = ""):
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.java = java
        self.s3_endpoint = s3_endpoint
        self._held: set[tuple[str, int]] = set()  # (name, thread): the claims this object holds

    @contextlib.contextmanager
    def _claim(self, name: str, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the cluster ``name`` alone while it is created or deleted: a task's retry beside a zombie
        of its previous try, or the janitor beside a creator, would otherwise each start JVMs and one
        set would be forgotten. An advisory lock (``flock``); the kernel drops it with its holder, so a
        killed creator leaves no stale claim. The lock file goes with the cluster: the last holder
        removes it while still holding it when no cluster is left, and a waiter that then wins the lock
        on the removed file sees that its inode is no longer the path's and opens the path again."""
        import threading

        me = (name, threading.get_ident())
        if me in self._held:  # delete() inside create(): already ours
            yield
            return
        locks = self.state_dir / "locks"
        locks.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = locks / f"{name}.lock"
        timeout_s = CLAIM_TIMEOUT_S if timeout_s is None else timeout_s
        fd = _lock(path, time.monotonic() + timeout_s, name, timeout_s)
        try:
            self._held.add(me)
            try:
                yield
            finally:
                self._held.discard(me)
                if not self._dir(name).exists():
                    path.unlink(missing_ok=True)  # under the lock: no one holds this inode but us
        finally:
            os.close(fd)  # and with it the lock

    # ------------------------------------------------------------------ helpers
    def _dir(self, name: str) -> Path:
        return self.state_dir / "clusters" / name

    def _load(self, name: str) -> LocalState | None:
        try:
            return LocalState.from_json((self._dir(name) / "state.json").read_text())
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _save(self, state: LocalState) -> None:
        """Write the state whole (a reader never sees half a file)."""
        path = self._dir(state.name) / "state.json"
        tmp = path.with_name(f".state-{os.getpid()}.json")
        tmp.write_text(state.to_json())
        os.replace(tmp, path)

    def _info(self, state: LocalState) -> ClusterInfo:
        return ClusterInfo(name=state.name, backend=self.name, url=state.url, replicas=state.replicas,
                           expires_at=state.expires_at, ceiling_at=state.ceiling_at, endpoint_mode="local",
                           state_dir=str(self.state_dir), dag_id=state.dag_id, run_id=state.run_id,
                           uid=state.created_at, extended_at=state.extended_at)

    def _command(self, spec: ClusterSpec, port: int, flatfile: Path, workdir: Path, index: int,
                 login_conf: Path) -> list[str]:
        cfg = spec.config
        props = []
        endpoint = spec.s3_endpoint or self.s3_endpoint
        if endpoint:
            props = [f"-Dsys.ai.h2o.persist.s3.endPoint={endpoint}", "-Dsys.ai.h2o.persist.s3.enable.path.style=true"]
        argv = [self.java, f"-Xmx{cfg.memory_mb}m", f"-Xms{min(cfg.memory_mb, 256)}m", *cfg.jvm_options, *props,
                "-jar", str(h2o_jar()), "-name", spec.name, "-flatfile", str(flatfile),
                "-ip", HOST, "-web_ip", HOST, "-port", str(port), "-hash_login", "-login_conf", str(login_conf),
                "-ice_root", str(workdir / f"ice-{index}"),
                "-log_dir", str(workdir / f"logs-{index}"), "-log_level", "WARN", "-allow_unsupported_java"]
        if cfg.nthreads:
            argv += ["-nthreads", str(cfg.nthreads)]
        return argv

    # ---------------------------------------------------------------- interface
    def create(self, spec: ClusterSpec) -> ClusterInfo:
        """Start ``replicas`` JVMs, or re-attach when this run's cluster is already up (one creator at a time)."""
        with self._claim(spec.name):
            return self._create(spec)

    def _create(self, spec: ClusterSpec) -> ClusterInfo:
        existing = self._load(spec.name)
        if existing is not None:
            if self._whole(existing):
                if existing.ceiling_at and not _is_watchdog(existing.watchdog_pid, spec.name):
                    existing.watchdog_pid = self._start_watchdog(spec.name)  # its guard was killed: a new one
                # a new version under the claim: a janitor that decided on the listed one keeps it
                existing.extended_at = datetime.now(UTC).isoformat()
                self._save(existing)
                return self._info(existing)
            self.delete(spec.name)  # a broken or half-made leftover of this run: replace it
        jar = h2o_jar()
        if not jar.exists():
            raise ClusterError(f"h2o.jar not found at {jar}: install h2o==3.46.0.11 or set H2O_JAR", reason="NoJar")
        if shutil.which(self.java) is None:
            raise ClusterError(f"java executable {self.java!r} not found: install Java 17", reason="NoJava")
        ports = _pick_ports(spec.config.replicas)  # before anything is written: NoPorts leaves nothing behind
        workdir = self._dir(spec.name)
        workdir.parent.mkdir(parents=True, exist_ok=True)
        workdir.mkdir(mode=0o700, exist_ok=True)  # node logs, ice and the login: this user's only
        flatfile = workdir / "flatfile.txt"
        flatfile.write_text("".join(f"{HOST}:{p}\n" for p in ports))
        nodes: list[NodeState] = []
        started: list[subprocess.Popen[bytes]] = []
        now = datetime.now(UTC)
        state = LocalState(name=spec.name, replicas=spec.config.replicas, nodes=nodes,
                           created_at=now.isoformat(), expires_at=(spec.expires_at or now).isoformat(),
                           labels=spec.labels, ceiling_at=spec.ceiling_at.isoformat() if spec.ceiling_at else "",
                           dag_id=spec.dag_id, run_id=spec.run_id, ports=ports)
        try:
            # The state and the watchdog come before any JVM: a creator killed at any line leaves a
            # cluster that its retry, the janitor and the ceiling can all see and stop.
            self._save(state)
            if state.ceiling_at:
                state.watchdog_pid = self._start_watchdog(spec.name)
                self._save(state)
            login_conf = write_private(workdir / "login", Login.generate())
            for i, port in enumerate(ports):
                log = workdir / f"node-{i}.out"
                with open(log, "ab") as out:
                    proc = subprocess.Popen(self._command(spec, port, flatfile, workdir, i, login_conf), stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, cwd=workdir)
                started.append(proc)
                testhooks.checkpoint("local:node-started")
                nodes.append(NodeState(pid=proc.pid, port=port, log=str(log)))
                self._save(state)
                testhooks.checkpoint("local:node-saved")
        except BaseException:
            for proc in started:  # our children: a JVM not yet exec'd has no command line to be found by
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    proc.kill()
                    proc.wait(10)
            self.delete(spec.name)
            raise
        return self._info(state)

    @staticmethod
    def _whole(state: LocalState) -> bool:
        """Every node the cluster was made with is recorded and alive (a creator killed half-way is not)."""
        return len(state.nodes) == state.replicas and all(_is_ours(n.pid, state.name) for n in state.nodes)

    def _start_watchdog(self, name: str) -> int:
        """The process that stops this cluster at its ceiling, whatever happens to Airflow."""
        import sys

        with open(self._dir(name) / "watchdog.out", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "h2o_tasks.cluster.watchdog", str(self.state_dir), name],
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self._dir(name))
        return proc.pid

    def status(self, info: ClusterInfo, elapsed_s: float = 0.0, formation_timeout_s: float | None = None) -> ClusterStatus:
        state = self._load(info.name)
        if state is None:
            return ClusterStatus(info.name, exists=False, failed=True, reason="NotFound",
                                 message=f"cluster {info.name} does not exist")
        for i, node in enumerate(state.nodes):
            if not _is_ours(node.pid, state.name):
                tail = "\n".join(Path(node.log).read_text(errors="replace").splitlines()[-15:]) if Path(node.log).exists() else ""
                return ClusterStatus(info.name, exists=True, failed=True, reason="NodeExited",
                                     message=f"H2O node {i} (pid {node.pid}) of {info.name} exited; last log lines:\n{tail}",
                                     expected_size=state.replicas, url=state.url)
        cloud = fetch_cloud(state.url, self.login(info))
        d = decide(cloud, state.replicas, elapsed_s=elapsed_s, formation_timeout_s=formation_timeout_s)
        return ClusterStatus(info.name, exists=True, ready=d.ready, failed=d.failed, reason=d.reason,
                             message=d.message, cloud_size=cloud.cloud_size if cloud else 0,
                             expected_size=state.replicas, url=state.url)

    async def astatus(self, api: Any, info: ClusterInfo, elapsed_s: float = 0.0,
                      formation_timeout_s: float | None = None) -> ClusterStatus:
        """``status`` in a thread: it reads files and asks ``/3/Cloud`` with blocking calls."""
        import asyncio

        return await asyncio.to_thread(self.status, info, elapsed_s, formation_timeout_s)

    def aobserve(self, api: Any, info: ClusterInfo, started_at: float, formation_timeout_s: float | None = None,
                 tick_s: float = 0.5) -> AsyncIterator[ClusterStatus]:
        """``astatus`` every ``tick_s`` (node processes and ``/3/Cloud`` on loopback: no API server to spare)."""
        return polled(lambda elapsed: self.astatus(api, info, elapsed, formation_timeout_s), started_at, tick_s)

    def wait_ready(self, info: ClusterInfo, timeout_s: float, poll_s: float = 0.1) -> ClusterStatus:
        return poll_until_ready(info.name, lambda elapsed: self.status(info, elapsed_s=elapsed), timeout_s, poll_s)

    def endpoint(self, info: ClusterInfo) -> str:
        state = self._load(info.name)
        if state is None:
            raise ClusterError(f"cluster {info.name} does not exist", reason="NotFound")
        return state.url

    def local_endpoint(self, info: ClusterInfo) -> str:
        return self.endpoint(info)

    def login(self, info: ClusterInfo) -> Login | None:
        """The cluster's REST login, from its state directory (None for a cluster made without one)."""
        return read_private(self._dir(info.name) / "login")

    def extend(self, info: ClusterInfo, by: timedelta) -> str:
        with self._claim(info.name):  # against a janitor's compare-and-delete
            state = self._load(info.name)
            if state is None:
                raise ClusterError(f"cluster {info.name} does not exist", reason="NotFound")
            state.expires_at = extended_expiry(state.expires_at, state.ceiling_at, by)
            state.extended_at = datetime.now(UTC).isoformat()  # a new version even when the expiry stays
            self._save(state)
            return state.expires_at

    def log_secrets(self, info: ClusterInfo) -> list[str]:
        """None: local nodes get no secret in their arguments (the login is a file of its hash)."""
        return []

    def close(self) -> None:
        """Nothing is held open for a local cluster."""

    def evidence(self, info: ClusterInfo, directory: Path) -> list[Path]:
        """Each node's console output and H2O log files, and whether its JVM is still alive."""
        directory.mkdir(parents=True, exist_ok=True)
        workdir, state = self._dir(info.name), self._load(info.name)
        if state is None:
            (directory / "nodes.json").write_text(json.dumps({"cluster": info.name, "state": "gone"}))
            return [directory / "nodes.json"]
        nodes = [{"index": i, "pid": n.pid, "port": n.port, "alive": _is_ours(n.pid, info.name),
                  "process_state": _proc_state(n.pid) or "exited"} for i, n in enumerate(state.nodes)]
        (directory / "nodes.json").write_text(json.dumps(nodes, indent=2))
        for path in sorted(workdir.glob("node-*.out")) + sorted(workdir.glob("logs-*/**/*")):
            if path.is_file():
                target = directory / path.relative_to(workdir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        return sorted(p for p in directory.rglob("*") if p.is_file())

    def delete(self, info: ClusterInfo | str, timeout_s: float = 15.0, *, if_unchanged: bool = False) -> bool:
        """Stop this cluster's JVMs (only those, by pid), wait until gone, remove its state.
        ``if_unchanged``: see :meth:`ClusterBackend.delete`."""
        name = info if isinstance(info, str) else info.name
        with self._claim(name):
            if if_unchanged and not isinstance(info, str):
                state = self._load(name)  # unreadable or gone is not the incarnation decided on either
                if state is None or (state.created_at, state.expires_at, state.extended_at) != (
                        info.uid or state.created_at, info.expires_at, info.extended_at):
                    return False
            return self._delete(name, timeout_s)

    def _delete(self, name: str, timeout_s: float) -> bool:
        workdir = self._dir(name)
        state = self._load(name)
        if state is None and not workdir.exists():
            return False
        pids = {n.pid for n in state.nodes} if state else set()
        pids |= set(_jvms_started_in(workdir))  # a creator killed between a JVM's start and its record
        ours = sorted(p for p in pids if _is_ours(p, name))
        if state and state.watchdog_pid and _is_watchdog(state.watchdog_pid, name) and state.watchdog_pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):  # the JVMs' own signal says which
                os.kill(state.watchdog_pid, signal.SIGTERM)
        for sig, grace in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            for pid in ours:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                except PermissionError as exc:  # another user's JVMs: nothing stopped, nothing forgotten
                    raise ClusterError(f"could not stop H2O JVMs {ours} of {name}: not permitted to signal pid {pid} "
                                       f"({exc.strerror}; the cluster was started by another user)", retryable=True,
                                       reason="StopFailed") from None
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                for pid in ours:
                    _reap(pid)
                ours = [p for p in ours if _proc_state(p) not in ("", "Z")]
                if not ours:
                    break
                time.sleep(0.1)
            if not ours:
                break
        if ours:
            raise ClusterError(f"could not stop H2O JVMs {ours} of {name}", retryable=True, reason="StopFailed")
        shutil.rmtree(workdir, ignore_errors=True)
        return True

    def list_clusters(self) -> list[ClusterInfo]:
        root = self.state_dir / "clusters"
        states = [self._load(p.name) for p in sorted(root.iterdir())] if root.exists() else []
        return [self._info(s) for s in states if s is not None]

    def list_expired(self, now: datetime | None = None) -> list[ClusterInfo]:
        now = now or datetime.now(UTC)
        return [c for c in self.list_clusters() if c.expires_at and datetime.fromisoformat(c.expires_at) <= now]
