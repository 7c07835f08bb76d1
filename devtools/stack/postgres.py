"""A real PostgreSQL server for development and tests, from Debian's ``postgresql`` package.

For tests only: ``initdb -A trust`` lets any local user connect as any role without a
password; the server listens on 127.0.0.1 only and runs with ``fsync`` and
``synchronous_commit`` off (a crash may lose data, which a throwaway test database can afford).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from devtools.stack import procs

PG_ROOT = Path("/usr/lib/postgresql")
SERVER_BINARIES = ("initdb", "postgres", "pg_ctl")


@dataclass
class PostgresServer:
    process: procs.ServerProcess
    host: str
    port: int
    user: str
    dbname: str
    data_dir: Path
    private_dir: Path | None = None  # created for this server (as root), removed with it

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT) of this server's postmaster; SIGKILL to it and its children after ``timeout``."""
        proc = self.process.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)  # "fast": rolls back open transactions, disconnects clients
            try:
                proc.wait(timeout)  # the postmaster exits only after all its children did
            except subprocess.TimeoutExpired:
                # each backend is its own process group (setsid): kill them by pid, not by group
                with contextlib.suppress(psutil.NoSuchProcess):
                    children = psutil.Process(proc.pid).children(recursive=True)
                    proc.kill()
                    proc.wait(10)
                    for child in children:
                        with contextlib.suppress(psutil.NoSuchProcess):
                            child.kill()
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<ver>/bin`` with the server binaries, if any."""
    dirs = [d / "bin" for d in PG_ROOT.glob("*") if d.name.isdigit()] if PG_ROOT.is_dir() else []
    dirs = [d for d in dirs if all((d / b).is_file() for b in SERVER_BINARIES)]
    return max(dirs, key=lambda d: int(d.parent.name)) if dirs else None


def ensure_bin_dir() -> Path:
    """The server binaries; installed from Debian's packages when missing and running as root."""
    if (found := find_bin_dir()) is not None:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql/<ver>/bin: "
                           "install Debian's package: sudo apt-get install postgresql")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        # the package lists may be missing or stale: refresh them only then
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    if (found := find_bin_dir()) is None:
        raise RuntimeError("apt-get installed postgresql but no server binaries appeared under /usr/lib/postgresql")
    return found


def _as_user(user: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    # setpriv execs (no fork), so the pid procs.start records is the server's own
    if user is None:
        return argv
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--", *argv]


def start(workdir: Path, *, dbname: str = "airflow", user: str = "postgres", port: int = 0,
          host: str = "127.0.0.1", timeout: float = 120.0) -> PostgresServer:
    """A fresh cluster (initdb) in ``workdir``, served on ``host``:free port, with database ``dbname``.

    ``user`` is the superuser initdb creates. Not root: the server runs as the current user, its
    data and socket dirs are ``workdir/data`` and ``workdir/sock``. Root: PostgreSQL refuses to run
    as root, so it runs as the ``postgres`` system user of the Debian package, which owns its data
    and socket dirs; they are then in a private dir under /tmp (``workdir/data`` links to it),
    removed by ``stop()``, because the caller's dir may be out of that user's reach: pytest's base
    temp dir is 0700 and every pytest session that starts makes it so again.
    """
    bin_dir = ensure_bin_dir()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    runas = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    private = Path(tempfile.mkdtemp(prefix="h2o-airflow-pg-", dir="/tmp")) if runas else None
    base = private or workdir
    data, sock = base / "data", base / "sock"
    log = workdir / "postgres.log"
    port = port or procs.free_port(host)
    isready = [str(bin_dir / "pg_isready"), "-q", "-h", host, "-p", str(port), "-U", user, "-d", "postgres"]
    # Airflow's components each keep sync and async connection pools: more than the default 100
    argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-c", f"listen_addresses={host}",
            "-c", f"unix_socket_directories={sock}", "-c", "max_connections=300", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    server = None
    try:
        sock.mkdir(exist_ok=True)
        if runas is not None:
            for d in (base, sock):
                os.chown(d, runas.pw_uid, runas.pw_gid)
            (workdir / "data").symlink_to(data)
        res = subprocess.run(_as_user(runas, [str(bin_dir / "initdb"), "-D", str(data), "-U", user, "-A", "trust",
                                              "-E", "UTF8", "--locale=C", "--no-sync"]),
                             cwd=base, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")
        process = procs.start("postgres", _as_user(runas, argv), log, cwd=base, timeout=timeout,
                              ready=lambda: subprocess.run(isready, check=False).returncode == 0)
        server = PostgresServer(process, host, port, user, dbname, data, private)
        res = subprocess.run([str(bin_dir / "createdb"), "-h", host, "-p", str(port), "-U", user, dbname],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"createdb {dbname} failed: {res.stderr[-2000:]}")
    except BaseException:
        if server is not None:
            server.stop()
        elif private is not None:
            shutil.rmtree(private, ignore_errors=True)
        raise
    return server
