"""Start a server process, wait until it answers, stop it by its own process id."""

from __future__ import annotations

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


def start(name: str, argv: Sequence[str], log_path: Path, *, ready: Callable[[], bool],
          timeout: float = 120.0, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> ServerProcess:
    """Start ``argv``, poll ``ready()`` until true; on failure stop it and raise with its log tail."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
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
