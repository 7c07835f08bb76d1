"""The training and scoring DAGs, unchanged, on `backend: kubernetes` against the test bed.

Airflow runs here (`airflow dags test`) with the test bed's "airflow" identity (the Role of
k8s/rbac.yaml); the H2O pods run in network namespaces and read S3 from a moto server bound
to the bed's host address (the pods cannot reach this machine's loopback).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from h2o_airflow import local_runs
from h2o_tasks.devstack import s3server, seed
from tests.fixtures.k8s_bed import NAMESPACE

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DAY = "2013-02-04"


@pytest.fixture(scope="module")
def bed_s3(k8s_bed, tmp_path_factory, flights_parquet_dir):
    server = s3server.start(tmp_path_factory.mktemp("bed-moto"), host=k8s_bed.network.host_ip)
    try:
        seed.seed_s3(server.settings, flights_parquet_dir, bucket="h2o-demo", prefix="flights")
        yield server.settings
    finally:
        server.stop()


@pytest.fixture(scope="module")
def k8s_airflow(k8s_bed, bed_s3, tmp_path_factory):
    home = tmp_path_factory.mktemp("k8s-airflow")
    dags = home / "dags"
    (dags / "pipelines").mkdir(parents=True)
    shutil.copy(ROOT / "dags" / "h2o_pipelines.py", dags / "h2o_pipelines.py")
    raw = yaml.safe_load((ROOT / "dags" / "pipelines" / "arrival_delay.yaml").read_text())
    raw["name"] = "k8s-delay"
    raw["registry_uri"] = "s3://h2o-demo/models/k8s-delay"
    raw["scoring"] = {**raw["scoring"], "output_uri": "s3://h2o-demo/predictions/k8s-delay", "hive_table": ""}
    raw["cluster"] = {"backend": "kubernetes", "replicas": 3, "memory": "768m", "cpu": "500m", "nthreads": 1,
                      "namespace": NAMESPACE, "endpoint_mode": "pod-ip", "lookup_timeout_s": 60,
                      "image": "h2o-airflow/h2o:3.46.0.11"}
    (dags / "pipelines" / "k8s_delay.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = local_runs.airflow_env(home, s3_endpoint=bed_s3.endpoint_url, s3_access_key=bed_s3.access_key,
                                 s3_secret_key=bed_s3.secret_key)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    env["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(k8s_bed.control_plane.airflow_kubeconfig),
                                              "namespace": NAMESPACE}})
    log = home / "runs.log"
    assert local_runs.airflow(["db", "migrate"], env, log, timeout=600) == 0, log.read_text()[-3000:]
    return env, log


def run(env, log, dag_id, day=DAY):
    rc = local_runs.dags_test(dag_id, day, env, log, timeout=900)
    report = local_runs.run_report(dag_id, day, env)
    return rc, {r.task: r.state for r in report}, {r.task: r.result for r in report}


def leftovers(k8s_bed, name: str) -> dict:
    from kubernetes import client

    core, apps = client.CoreV1Api(k8s_bed.admin), client.AppsV1Api(k8s_bed.admin)
    sel = f"app.kubernetes.io/instance={name}"
    procs = subprocess.run(["pgrep", "-f", "--", f"-name {name} "], capture_output=True, text=True).stdout.split()
    return {"pods": len(core.list_namespaced_pod(NAMESPACE, label_selector=sel).items),
            "services": len(core.list_namespaced_service(NAMESPACE, label_selector=sel).items),
            "statefulsets": len(apps.list_namespaced_stateful_set(NAMESPACE, label_selector=sel).items),
            "processes": len(procs), "netns": len(k8s_bed.network.leftovers())}


def test_training_and_scoring_dags_on_kubernetes(k8s_bed, k8s_airflow):
    env, log = k8s_airflow
    rc, states, results = run(env, log, "h2o_train__k8s-delay")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
    assert rc == 0 and set(states.values()) == {"success"}, (states, tail)
    cluster = results["create_cluster"]
    assert cluster["backend"] == "kubernetes" and cluster["replicas"] == 3
    assert results["train"]["best_metric_value"] > 0.7
    assert results["export_and_promote"]["promoted"] is True
    assert leftovers(k8s_bed, cluster["name"]) == {"pods": 0, "services": 0, "statefulsets": 0, "processes": 0,
                                                    "netns": 0}

    rc, states, results = run(env, log, "h2o_score__k8s-delay")
    assert rc == 0 and set(states.values()) == {"success"}, states
    scored = results["score"]
    assert scored["rows_in"] == scored["rows_scored"] > 800
    assert leftovers(k8s_bed, results["create_cluster"]["name"])["pods"] == 0
