"""Start a server process, wait until it answers, stop it by its own process id."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A free port, below the kernel's ephemeral range: the server it is for binds it seconds later,
    and an outgoing connection, which takes its port from that range, cannot take it meanwhile."""
    from h2o_tasks.cluster.local import ephemeral_low

    high = max(ephemeral_low(), 10001)
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, high)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # that range is full: any port the kernel gives
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class ServerProcess:
    """A child process in its own session (so its children can be stopped with it)."""

    name: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group this process leads, then SIGKILL after ``timeout``."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


ledger: Path | None = None  # where each child started is recorded (a deployment's state), or nowhere


def _start_time(pid: int) -> str:
    """The process's start time since boot (``/proc/<pid>/stat`` field 22), '' when gone: with the pid,
    it names one process, never a later one given the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def record(name: str, pid: int) -> None:
    """Append a child that leads its own process group to the :data:`ledger` (nothing when unset), right
    after its start: a parent SIGKILLed at any later line leaves it findable."""
    if ledger is None:
        return
    with open(ledger, "a") as f:
        f.write(json.dumps({"name": name, "pid": pid, "start": _start_time(pid)}) + "\n")


def stop_recorded(path: Path, timeout: float = 20.0) -> list[str]:
    """Stop every process group a previous parent recorded in ``path`` and left running (that parent was
    killed before its clean-up), then empty the ledger; the names of those stopped. A pid now used by
    another process is left alone."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    left = []
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            entry = json.loads(line)
            if entry["start"] and _start_time(int(entry["pid"])) == entry["start"]:
                left.append(entry)
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        for entry in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(entry["pid"], sig)
        deadline = time.monotonic() + grace
        while left and time.monotonic() < deadline:
            for entry in left:  # ours to reap when this process is their parent (a test)
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(entry["pid"], os.WNOHANG)
            if not any(_start_time(e["pid"]) == e["start"] and _state(e["pid"]) != "Z" for e in left):
                break
            time.sleep(0.1)
    path.write_text("")
    return [e["name"] for e in left]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def start(name: str, argv: Sequence[str], log_path: Path, *, ready: Callable[[], bool],
          timeout: float = 120.0, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> ServerProcess:
    """Start ``argv``, poll ``ready()`` until true; on failure stop it and raise with its log tail."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    record(name, proc.pid)
    server = ServerProcess(name, proc, log_path)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not server.alive():
                raise RuntimeError(f"{name} exited with code {proc.returncode} before answering; log {log_path}:\n"
                                   f"{server.log_tail()}")
            if ready():
                return server
            time.sleep(0.1)
    except BaseException:  # an interrupted wait (Ctrl-C, a test timeout) must not leave the server running
        server.stop()
        raise
    server.stop()
    raise RuntimeError(f"{name} did not answer within {timeout:.0f}s; log {log_path}:\n{server.log_tail()}")
