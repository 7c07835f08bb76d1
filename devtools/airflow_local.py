"""Run this repository's DAGs on a local Airflow (SQLite, or PostgreSQL when given).

Used by ``make demo`` and by the tests: the environment that points Airflow at the DAGs, the
plugins and the local services; ``airflow dags test`` runs; the real components (scheduler
with the LocalExecutor, API server, DAG processor, triggerer) for backfills; and a report of
what a run did (task states, durations and return values) read from Airflow's database.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.stack import procs
from devtools.stack.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
# a resolver configuration for the Airflow processes (``nameserver ...``), bound over /etc/resolv.conf in
# a private mount namespace as ``ip netns exec`` does: Airflow resolves a cluster's Service names as it
# would running inside that cluster (the Kubernetes test bed's DNS)
RESOLV_CONF_ENV = "H2O_AIRFLOW_RESOLV_CONF"


def argv(env: dict[str, str], args: list[str]) -> list[str]:
    """The command line of this virtual environment's ``airflow``, under ``env``'s resolver if it names one."""
    cmd = [str(Path(sys.executable).parent / "airflow"), *args]
    resolv = env.get(RESOLV_CONF_ENV)
    if not resolv:
        return cmd
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv, *cmd]


@dataclass(frozen=True)
class TaskReport:
    task: str
    state: str
    seconds: float
    result: Any
    try_number: int = 1


def airflow_env(home: Path, *, s3_endpoint: str, s3_access_key: str, s3_secret_key: str,
                hive_host: str = "", hive_port: int = 0, h2o_state_dir: Path | None = None,
                hive_staging_dir: Path | None = None, sql_alchemy_conn: str = "") -> dict[str, str]:
    """Environment for an Airflow in ``home`` with connections given as variables.

    Its metadata database is SQLite in ``home`` unless ``sql_alchemy_conn`` names another one,
    e.g. ``postgresql+psycopg2://...`` (the async engine's ``postgresql+asyncpg://`` URL is
    derived from it by Airflow): SQLite has one writer at a time, so a scheduler running beside
    other writers (the CLI, the API server, concurrent runs) needs PostgreSQL.
    """
    aws = {"conn_type": "aws", "login": s3_access_key, "password": s3_secret_key,
           "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
        "H2O_AIRFLOW_STATE_DIR": str(h2o_state_dir or home / "h2o"),
        "H2O_AIRFLOW_HIVE_STAGING_DIR": str(hive_staging_dir or home / "hive-staging"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
        "NO_PROXY": "*",
    }
    if sql_alchemy_conn:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = sql_alchemy_conn
    if hive_host:
        env["AIRFLOW_CONN_HIVESERVER2_DEFAULT"] = json.dumps(
            {"conn_type": "hiveserver2", "host": hive_host, "port": hive_port, "schema": "default",
             "extra": {"auth_mechanism": "NOSASL"}})
    return env


def airflow(args: list[str], env: dict[str, str], log: Path, timeout: float | None = None) -> int:
    """Run the ``airflow`` CLI of this virtual environment, appending its output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.call(argv(env, args), env={**os.environ, **env}, stdout=out,
                               stderr=subprocess.STDOUT, timeout=timeout)


def dags_test(dag_id: str, logical_date: str, env: dict[str, str], log: Path, conf: dict | None = None,
              timeout: float | None = None) -> int:
    args = ["dags", "test", dag_id, logical_date]
    if conf:
        args += ["--conf", json.dumps(conf)]
    return airflow(args, env, log, timeout)


_REPORT = r"""
import json, sys
from sqlalchemy import select
from airflow.models import DagRun, TaskInstance
from airflow.models.xcom import XComModel
from airflow.sdk.serde import deserialize
from airflow.utils.session import create_session
dag_id, logical = sys.argv[1], sys.argv[2]
out = []
with create_session() as s:
    runs = s.scalars(select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc())).all()
    run = next(r for r in runs if r.logical_date and r.logical_date.isoformat().startswith(logical))
    tis = s.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id)).all()
    for ti in sorted(tis, key=lambda t: (t.start_date is None, t.start_date or run.start_date)):
        x = s.scalars(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id,
                      XComModel.task_id == ti.task_id, XComModel.key == "return_value")).first()
        # the stored form keeps tuples as {"__classname__": "builtins.tuple", ...}: read back as the task returned them
        value = deserialize(XComModel.deserialize_value(x)) if x is not None else None
        out.append({"task": ti.task_id, "state": str(ti.state), "seconds": round(ti.duration or 0, 1),
                    "result": value, "try_number": ti.try_number})
print(json.dumps(out, default=str))
"""


def run_report(dag_id: str, logical_date: str, env: dict[str, str]) -> list[TaskReport]:
    """Task states, durations and return values of the newest run of ``dag_id`` at ``logical_date``.

    A SQLite database is read here directly (an ``airflow`` process costs seconds of imports for
    each report); any other database, or a value that is not plain JSON, through Airflow's models.
    """
    fast = _sqlite_report(dag_id, logical_date, env)
    if fast is not None:
        return fast
    res = subprocess.run([sys.executable, "-c", _REPORT, dag_id, logical_date], env={**os.environ, **env},
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"could not read the run report of {dag_id}: {res.stderr[-2000:]}")
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    return [TaskReport(r["task"], r["state"], r["seconds"], r["result"], r.get("try_number") or 1) for r in rows]


class _NotPlain(Exception):
    pass


def _plain(value: Any) -> Any:
    """A stored XCom value as :func:`run_report` gives it (JSON), without Airflow's serde: its tuple and
    set envelopes become lists; any other envelope raises :class:`_NotPlain`."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__classname__" in value:
        if value["__classname__"] not in ("builtins.tuple", "builtins.set", "builtins.frozenset"):
            raise _NotPlain(value["__classname__"])
        return [_plain(v) for v in value.get("__data__", [])]
    if "__type" in value or "__var" in value:  # Airflow's older serialization envelope
        raise _NotPlain(str(value.get("__type")))
    return {k: _plain(v) for k, v in value.items()}


def _stored(raw: str | None) -> Any:
    """An XCom's ``value`` column as SQLite holds it (JSON; the serialized value is JSON text in it)."""
    if raw is None:
        return None
    value = json.loads(raw)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return _plain(value)


def _sqlite_report(dag_id: str, logical_date: str, env: dict[str, str]) -> list[TaskReport] | None:
    """:func:`run_report` from the SQLite file the environment names, or None (another database, a value
    that needs Airflow's serde, a date format not understood)."""
    import sqlite3

    conn = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if conn and not conn.startswith("sqlite:///"):
        return None
    path = Path(conn.removeprefix("sqlite:///")) if conn else Path(env["AIRFLOW_HOME"]) / "airflow.db"
    if not path.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            runs = db.execute("SELECT run_id, logical_date, start_date FROM dag_run WHERE dag_id = ? ORDER BY id DESC",
                              (dag_id,)).fetchall()
            run = next((r for r in runs if r[1] and str(r[1]).replace(" ", "T", 1).startswith(logical_date)), None)
            if run is None:
                return None
            tis = db.execute("SELECT task_id, state, duration, try_number, start_date FROM task_instance "
                             "WHERE dag_id = ? AND run_id = ?", (dag_id, run[0])).fetchall()
            values = dict(db.execute("SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND "
                                     "key = 'return_value' ORDER BY map_index DESC", (dag_id, run[0])).fetchall())
        out = []
        for task, state, duration, try_number, _ in sorted(tis, key=lambda t: (t[4] is None, t[4] or run[2])):
            out.append(TaskReport(task, str(state), round(duration or 0, 1), _stored(values.get(task)), try_number or 1))
        return out
    except (sqlite3.Error, _NotPlain, ValueError, TypeError):
        return None


COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


class AirflowAPIError(RuntimeError):
    """An HTTP error of Airflow's API server; ``code`` is its status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class AirflowServices:
    """Airflow's components as separate processes on loopback, as a deployment runs them.

    Scheduled intervals are off (``use_job_schedule``): only runs that are asked for (a
    backfill, a trigger) happen. Each component is its own process group, stopped by its id.
    """

    env: dict[str, str]
    log_dir: Path
    port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict:
        """A call of the REST API (``/api/v2/...``) as the simple auth manager's admin."""
        return json.loads(self.fetch(method, path + (f"?{urllib.parse.urlencode(query)}" if query else ""), body))

    def fetch(self, method: str, path: str, body: dict | None = None, *, auth: bool = True) -> str:
        """The text of ``path`` (a path on the API server, or a URL on it), as the admin or as no one."""
        headers = {"Content-Type": "application/json"}
        if auth:
            if not self._token:
                user, password = self.admin_login()
                self._token = json.loads(self.fetch("POST", "/auth/token", {"username": user, "password": password},
                                                    auth=False))["access_token"]
            headers["Authorization"] = f"Bearer {self._token}"
        url = path if path.startswith(self.url) else self.url + path
        req = urllib.request.Request(url, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as exc:
            raise AirflowAPIError(exc.code, f"{method} {path}: HTTP {exc.code} {exc.read()[:1000]!r}") from exc

    @classmethod
    def start(cls, env: dict[str, str], log_dir: Path, parallelism: int = 16, timeout: float = 240, *,
              port: int = 0, scheduled: bool = False) -> AirflowServices:
        """Start the components; ``scheduled``: the scheduler also creates runs from the DAGs' schedules
        (a deployment), not only the runs that are asked for (the tests)."""
        port = port or free_port()
        env = {**env,
               "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
               "AIRFLOW__CORE__PARALLELISM": str(parallelism),
               "AIRFLOW__API__HOST": "127.0.0.1",
               "AIRFLOW__API__PORT": str(port),
               "AIRFLOW__API__WORKERS": "1",
               "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
               "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
               "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
               "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(scheduled),
               "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5"}
        log_dir.mkdir(parents=True, exist_ok=True)
        services = cls(env, log_dir, port)
        deadline = time.monotonic() + timeout
        try:
            for name in COMPONENTS:
                with open(log_dir / f"{name}.log", "ab") as out:
                    services.procs[name] = subprocess.Popen(argv(env, [name]), env={**os.environ, **env}, stdout=out,
                                                            stderr=subprocess.STDOUT, start_new_session=True)
                procs.record(f"airflow {name}", services.procs[name].pid)
                if name == "api-server":  # the execution API: a task the scheduler starts before it listens fails
                    services.wait_healthy(deadline - time.monotonic(), components=())
            services.wait_healthy(deadline - time.monotonic())
        except BaseException:
            services.stop()
            raise
        return services

    def admin_login(self) -> tuple[str, str]:
        """The simple auth manager's admin and the password the API server generated into AIRFLOW_HOME."""
        users = json.loads((Path(self.env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated").read_text())
        return "admin", users["admin"]

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
            return json.load(resp)

    def wait_healthy(self, timeout: float,
                     components: tuple[str, ...] = ("scheduler", "triggerer", "dag_processor")) -> None:
        """Until the API server answers and ``components`` report heartbeats."""
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"Airflow component(s) exited: {dead}; logs in {self.log_dir}")
            try:
                h = self.health()
                last = json.dumps(h)
                if all((h.get(k) or {}).get("status") == "healthy" for k in components):
                    return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(1)
        raise RuntimeError(f"Airflow not healthy after {timeout:.0f}s: {last}; logs in {self.log_dir}")

    def cli(self, args: list[str], log: Path, timeout: float | None = 300) -> int:
        """The ``airflow`` CLI with this deployment's configuration."""
        return airflow(args, self.env, log, timeout)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to each component's process group (its task processes too), SIGKILL after ``timeout``."""
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        for p in self.procs.values():  # task processes left in a group whose leader exited
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)

