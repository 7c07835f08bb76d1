"""`make airflow` (scripts/airflow.py): the deployment comes up with the project's DAGs, its login works,
the scheduler runs what is triggered, and Ctrl-C leaves no process of it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from devtools.airflow_local import ROOT
from tests.fixtures.processes import alive

pytestmark = pytest.mark.integration


def _call(url: str, path: str, token: str | None = None, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url + path, headers=headers, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def _processes_under(path: Path) -> list[str]:
    """Processes whose command line names ``path`` (the H2O JVMs name their ice and log dirs in it)."""
    return subprocess.run(["pgrep", "-af", str(path)], capture_output=True, text=True).stdout.splitlines()


def test_make_airflow_serves_the_dags_runs_a_trigger_and_ctrl_c_leaves_nothing(tmp_path):
    state = tmp_path / "state"
    out = tmp_path / "out.log"
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "airflow.py"), "--port", "0",
                                 "--state", str(state)], stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while "Ctrl-C stops everything" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(1)
        text = out.read_text()
        url, user, password = re.search(r"Airflow is up: (\S+)  login: (\S+) / (\S+)", text).groups()
        pids = [int(p) for p in re.search(r"process ids: ([\d ]+)", text).group(1).split()]
        assert len(pids) == 7  # S3, HiveServer2, PostgreSQL and Airflow's four components
        second = subprocess.run([sys.executable, str(ROOT / "scripts" / "airflow.py"), "--port", "0",
                                 "--state", str(state)], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and f"in use by another `make airflow` (pid {proc.pid})" in second.stderr
        assert (state / "airflow" / "simple_auth_manager_passwords.json.generated").exists()  # not wiped

        with urllib.request.urlopen(url + "/", timeout=30) as page:  # the UI itself
            assert page.status == 200 and b"<html" in page.read().lower()
        token = _call(url, "/auth/token", body={"username": user, "password": password})["access_token"]
        dag = "h2o_train__arrival-delay"
        deadline = time.monotonic() + 180
        while True:  # the DAG processor parses the folder after the components report healthy
            dags = {d["dag_id"] for d in _call(url, "/api/v2/dags?limit=100", token)["dags"]}
            if dag in dags or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert {dag, "h2o_score__arrival-delay", "h2o_janitor"} <= dags

        req = urllib.request.Request(f"{url}/api/v2/dags/{dag}", method="PATCH", data=b'{"is_paused": false}',
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        urllib.request.urlopen(req, timeout=60).close()
        run = _call(url, f"/api/v2/dags/{dag}/dagRuns", token,
                    {"logical_date": "2013-02-04T00:00:00Z", "conf": {"replicas": 1}})["dag_run_id"]
        deadline = time.monotonic() + 600
        while (st := _call(url, f"/api/v2/dags/{dag}/dagRuns/{run}", token)["state"]) not in ("success", "failed"):
            assert time.monotonic() < deadline, f"run {run} still {st}"
            time.sleep(3)
        tasks = {t["task_id"]: t["state"] for t in
                 _call(url, f"/api/v2/dags/{dag}/dagRuns/{run}/taskInstances", token)["task_instances"]}
        assert st == "success", tasks
        assert tasks["train"] == tasks["delete_cluster"] == "success"
        assert _processes_under(state / "h2o") == []  # the run's cluster is gone with its teardown

        # the export task's "Model report" link: this plugin's view on the API server, behind Airflow's login
        links = _call(url, f"/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/export_and_promote/links", token)
        report = links["extra_links"]["Model report"]
        assert report == f"{url}/h2o/reports/{dag}/{urllib.parse.quote(run, safe='')}/export_and_promote", links
        with urllib.request.urlopen(urllib.request.Request(report, headers={"Authorization": f"Bearer {token}"}),
                                    timeout=60) as page:
            assert "sandbox" in page.headers["Content-Security-Policy"]
            assert "Validation metrics" in page.read().decode()
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(report, timeout=60)
        assert anonymous.value.code == 401
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the foreground process
        code = proc.wait(180)
    assert code == 0, out.read_text()[-3000:]
    assert "stopped" in out.read_text().splitlines()[-1]
    assert [p for p in pids if alive(p)] == []
    assert _processes_under(state) == []  # nothing of it runs
