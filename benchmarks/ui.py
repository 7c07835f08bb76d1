"""Time to a usable UI: `make airflow` against Airflow alone, started the same way in the same run.

Project: ``scripts/airflow.py --port 0`` in a process of its own, from its start until (a) it
prints its URL and login (S3, HiveServer2 and PostgreSQL up, the data seeded, the database
migrated, Airflow's four components healthy) and (b) the REST API lists the project's DAGs (the
DAG processor has parsed the pipeline files): the UI a user can drive. Ctrl-C then stops it.

Baseline: Airflow's own components on the same machine with nothing of this project: SQLite,
``airflow db migrate``, the same four components (``devtools.airflow_local.AirflowServices``),
and one trivial DAG file, timed to the same two points. The ratio is what the project adds to
Airflow's own start.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.common import ROOT, Result, log, median

PROJECT_DAG = "h2o_train__arrival-delay"
PROBE_DAG = "ui_bench_probe"
PROBE = f'''
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{PROBE_DAG}", schedule=None, start_date=pendulum.datetime(2013, 1, 1, tz="UTC"))
def probe():
    @task
    def noop():
        return 1

    noop()


probe()
'''


def _get(url: str, token: str = "") -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
        return json.load(resp)


def _token(url: str, user: str, password: str) -> str:
    req = urllib.request.Request(url + "/auth/token", method="POST", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"username": user, "password": password}).encode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["access_token"]


def _until_listed(url: str, token: str, dag_id: str, t0: float, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if dag_id in {d["dag_id"] for d in _get(f"{url}/api/v2/dags?limit=100", token)["dags"]}:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise TimeoutError(f"{dag_id} not listed after {timeout:.0f}s")


def project_once(work: Path) -> tuple[float, float]:
    """`make airflow`'s script: seconds to its login line, and to the project's DAGs listed."""
    out = work / "make-airflow.log"
    with open(out, "w") as sink:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "airflow.py"), "--port", "0",
                                 "--state", str(work / "state")], stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = t0 + 900
        while not (found := re.search(r"Airflow is up: (\S+)  login: (\S+) / (\S+)", out.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"make airflow did not come up: {out.read_text()[-2000:]}")
            time.sleep(0.2)
        up = time.monotonic() - t0
        url, user, password = found.groups()
        return up, _until_listed(url, _token(url, user, password), PROJECT_DAG, t0)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(300)


def baseline_once(work: Path) -> tuple[float, float]:
    """Airflow alone (SQLite, the same four components, one trivial DAG): the same two points."""
    from devtools.airflow_local import AirflowServices, airflow

    home, dags = work / "airflow", work / "dags"
    dags.mkdir(parents=True)
    (dags / f"{PROBE_DAG}.py").write_text(PROBE)
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "NO_PROXY": "*"}
    t0 = time.monotonic()
    if airflow(["db", "migrate"], env, work / "cli.log", timeout=600) != 0:
        raise RuntimeError(f"airflow db migrate failed: {(work / 'cli.log').read_text()[-2000:]}")
    services = AirflowServices.start(env, work / "logs", scheduled=True)
    try:
        up = time.monotonic() - t0
        return up, _until_listed(services.url, _token(services.url, *services.admin_login()), PROBE_DAG, t0)
    finally:
        services.stop()


def run(reps: int, work: Path) -> list[Result]:
    """Interleaved repetitions of both; medians and the ratio of the time to a usable UI."""
    samples: dict[str, list[float]] = {"project_up": [], "project_usable": [], "baseline_up": [],
                                       "baseline_usable": []}
    for i in range(reps):
        for label, fn in (("baseline", baseline_once), ("project", project_once)):
            rep = work / f"{label}-{i}"
            rep.mkdir(parents=True, exist_ok=True)
            up, usable = fn(rep)
            samples[f"{label}_up"].append(round(up, 2))
            samples[f"{label}_usable"].append(round(usable, 2))
            log(f"   {label} {i + 1}/{reps}: login printed at {up:.1f}s, DAGs listed at {usable:.1f}s")
            shutil.rmtree(rep, ignore_errors=True)
    project, baseline = median(samples["project_usable"]), median(samples["baseline_usable"])
    ratio = round(project / baseline, 2) if project and baseline else None
    return [Result(
        name="ui", title="Time to a usable UI (make airflow)", unit="s",
        project_label="make airflow: services, seeding, PostgreSQL, Airflow, DAGs listed",
        baseline_label="Airflow alone: SQLite, the same components, one trivial DAG listed",
        project=project, baseline=baseline, ratio=ratio, ratio_definition="project / baseline",
        target="≤ 2.5", met=ratio is not None and ratio <= 2.5, samples=samples,
        extra={"project_up_s": median(samples["project_up"]), "baseline_up_s": median(samples["baseline_up"])},
        notes="The project's extra is its local services (moto S3, HiveServer2, PostgreSQL), seeding the flights "
              "and parsing the pipeline files; the Airflow components are the same.")]
