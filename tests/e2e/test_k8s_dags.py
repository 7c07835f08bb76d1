"""The training and scoring DAGs, unchanged, on `backend: kubernetes` against the test bed.

Airflow runs here (`airflow dags test`) with the test bed's "airflow" identity (the Role of
k8s/rbac.yaml) and the bed's DNS as its resolver, as inside a cluster; the H2O pods run in network
namespaces and read S3 from a moto server bound to the bed's host address (the pods cannot reach
this machine's loopback). Every cluster serves HTTPS; the main pipeline's is reached through its
client Service (ClusterIP), the others' by the leader pod's address.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from devtools import airflow_local, dag_folder
from devtools.stack import s3server, seed
from h2o_tasks import s3
from h2o_tasks.cluster.login import Login, ca_file, urlopen
from tests.fixtures import tls
from tests.fixtures.airflow import airflow_env, migrate
from tests.fixtures.k8s_bed import DOMAIN, NAMESPACE
from tests.fixtures.reports import jvms_of

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DAY = "2013-02-04"
TLS_SECRET = "h2o-tls"  # every pipeline here serves HTTPS (cluster.tls), verified by the tasks
SLOW_TREES = 300
FAULT_REPLICAS = 2  # the fault runs need a node besides the leader, not three (fewer JVMs on two cores)


@pytest.fixture(scope="module")
def bed_s3(k8s_bed, tmp_path_factory, flights_parquet_dir):
    server = s3server.start(tmp_path_factory.mktemp("bed-moto"), host=k8s_bed.network.host_ip)
    try:
        seed.seed_s3(server.settings, flights_parquet_dir, bucket="h2o-demo", prefix="flights")
        yield server.settings
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bed_tls(k8s_bed):
    """The keystore and CA every pipeline of this module serves its REST API with (cluster.tls)."""
    from kubernetes import client

    material = tls.material(k8s_bed.network.subnet, [f"*.{NAMESPACE}.svc.{DOMAIN}"])
    core = client.CoreV1Api(k8s_bed.admin)
    tls.create_secrets(core, NAMESPACE, TLS_SECRET, material)
    try:
        yield material
    finally:
        for name in (TLS_SECRET, f"{TLS_SECRET}-password"):
            core.delete_namespaced_secret(name, NAMESPACE)


@pytest.fixture(scope="module")
def k8s_airflow(k8s_bed, bed_s3, bed_tls, tmp_path_factory):
    home = tmp_path_factory.mktemp("k8s-airflow")
    dags = dag_folder.make(home / "dags")
    raw = dag_folder.example()
    raw["name"] = "k8s-delay"
    raw["registry_uri"] = "s3://h2o-demo/models/k8s-delay"
    raw["scoring"] = {**raw["scoring"], "output_uri": "s3://h2o-demo/predictions/k8s-delay", "hive_table": ""}
    # reached through its client Service's name (the bed's DNS and ClusterIP routing), as from inside a cluster
    raw["cluster"] = {"backend": "kubernetes", "replicas": 3, "memory": "768m", "cpu": "500m", "nthreads": 1,
                      "namespace": NAMESPACE, "endpoint_mode": "service", "lookup_timeout_s": 60,
                      "image": "h2o-airflow/h2o:3.46.0.11", "cluster_domain": DOMAIN,
                      "tls": {"secret": TLS_SECRET, "password_secret": f"{TLS_SECRET}-password"}}
    dag_folder.write_pipeline(dags, "k8s_delay", raw)
    # the same pipeline with a GBM that trains long enough to lose a node in the middle of it
    # (no scoring after training: what these runs show ends with the export)
    slow = {**raw, "name": "k8s-slow", "registry_uri": "s3://h2o-demo/models/k8s-slow",
            "scoring": {**raw["scoring"], "output_uri": "s3://h2o-demo/predictions/k8s-slow", "after_training": False},
            "training": {**raw["training"], "algorithms": [
                {"algo": "gbm", "params": {"ntrees": SLOW_TREES, "max_depth": 8, "learn_rate": 0.02}}]},
            "cluster": {**raw["cluster"], "replicas": FAULT_REPLICAS, "endpoint_mode": "pod-ip",
                        "unobservable_grace_s": 150}}
    dag_folder.write_pipeline(dags, "k8s_slow", slow)
    # a GBM that trains about as long as the API server outage of its test (40 s on the bed)
    patient = {**slow, "name": "k8s-patient", "registry_uri": "s3://h2o-demo/models/k8s-patient",
               "scoring": {**raw["scoring"], "output_uri": "s3://h2o-demo/predictions/k8s-patient",
                           "after_training": False},
               "training": {**raw["training"], "algorithms": [
                   {"algo": "gbm", "params": {"ntrees": 3 * SLOW_TREES, "max_depth": 8, "learn_rate": 0.02}}]}}
    dag_folder.write_pipeline(dags, "k8s_patient", patient)
    # a GBM that H2O refuses in the cluster: the run fails in training (its evidence is saved)
    broken = {**raw, "name": "k8s-broken", "registry_uri": "s3://h2o-demo/models/k8s-broken",
              "scoring": {**raw["scoring"], "output_uri": "s3://h2o-demo/predictions/k8s-broken"},
              "source": {**raw["source"], "training_window_days": 3},
              "cluster": {**raw["cluster"], "replicas": FAULT_REPLICAS, "endpoint_mode": "pod-ip"},
              "training": {**raw["training"], "algorithms": [{"algo": "gbm", "params": {"max_depth": -3}}]}}
    dag_folder.write_pipeline(dags, "k8s_broken", broken)
    env = airflow_env(home, bed_s3)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    env[airflow_local.RESOLV_CONF_ENV] = str(k8s_bed.resolv_conf)
    env["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(k8s_bed.control_plane.airflow_kubeconfig),
                                              "namespace": NAMESPACE}})
    log = home / "runs.log"
    migrate(env, log)
    return env, log


def run(env, log, dag_id, day=DAY):
    rc = airflow_local.dags_test(dag_id, day, env, log, timeout=900)
    report = airflow_local.run_report(dag_id, day, env)
    return rc, {r.task: r.state for r in report}, {r.task: r.result for r in report}


def leftovers(k8s_bed, name: str) -> dict:
    from kubernetes import client

    core, apps = client.CoreV1Api(k8s_bed.admin), client.AppsV1Api(k8s_bed.admin)
    sel = f"app.kubernetes.io/instance={name}"
    procs = jvms_of(name)
    return {"pods": len(core.list_namespaced_pod(NAMESPACE, label_selector=sel).items),
            "services": len(core.list_namespaced_service(NAMESPACE, label_selector=sel).items),
            "statefulsets": len(apps.list_namespaced_stateful_set(NAMESPACE, label_selector=sel).items),
            "secrets": len(core.list_namespaced_secret(NAMESPACE, label_selector=sel).items),
            "processes": len(procs), "netns": len(k8s_bed.network.leftovers())}


def test_the_training_dag_trains_promotes_and_scores_through_the_client_service(k8s_bed, k8s_airflow):
    env, log = k8s_airflow
    rc, states, results = run(env, log, "h2o_train__k8s-delay")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
    assert rc == 0 and set(states.values()) == {"success"}, (states, tail)
    cluster = results["create_cluster"]
    assert cluster["backend"] == "kubernetes" and cluster["replicas"] == 3
    # every task over TLS, to the client Service's name in the pipeline's cluster domain (its certificate's name)
    assert cluster["url"] == f"https://{cluster['name']}.{NAMESPACE}.svc.{DOMAIN}:54321", cluster
    assert cluster["tls_secret"] == TLS_SECRET and cluster["endpoint_mode"] == "service"
    assert results["train"]["best_metric_value"] > 0.7
    assert results["export_and_promote"]["promoted"] is True
    scored = results["score"]  # scoring after training, on the same cluster (the scoring DAG: the backfill below)
    assert scored["rows_in"] == scored["rows_scored"] > 800
    assert leftovers(k8s_bed, cluster["name"]) == {"pods": 0, "services": 0, "statefulsets": 0, "secrets": 0,
                                                    "processes": 0, "netns": 0}


def test_a_failure_in_training_leaves_a_diagnostics_bundle_without_secrets(k8s_bed, k8s_airflow, bed_s3, bed_tls):
    env, log = k8s_airflow
    rc, states, results = run(env, log, "h2o_train__k8s-broken")
    assert rc != 0 and states["train"] == "failed", states
    assert states["delete_cluster"] == "success", states
    bundle = {"uri": results["delete_cluster"]["diagnostics"]}
    client = bed_s3.client()
    keys = [k[len(bundle["uri"]) + 1:] for k in s3.list_keys(client, bundle["uri"])]
    pods = json.loads(s3.read_bytes(client, s3.join(bundle["uri"], "backend/pods.json")))
    names = sorted(p["metadata"]["name"] for p in pods)
    assert len(names) == FAULT_REPLICAS and all(f"backend/{n}.log" in keys for n in names), keys  # every node's log
    assert all(s3.read_bytes(client, s3.join(bundle["uri"], f"backend/{n}.log")) for n in names)
    events = json.loads(s3.read_bytes(client, s3.join(bundle["uri"], "backend/events.json")))
    assert {"Scheduled", "Started"} <= {e["reason"] for e in events}  # the run's events, the node agent's too
    assert "h2o-logs.zip" in keys and "status.json" in keys
    status = json.loads(s3.read_bytes(client, s3.join(bundle["uri"], "status.json")))
    assert "max_depth" in status["errors"]["train"]
    text = b"".join(s3.read_bytes(client, s3.join(bundle["uri"], k)) for k in keys)
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(s3.read_bytes(client, s3.join(bundle["uri"], "h2o-logs.zip")))) as logs:
        nodes = [n for n in logs.namelist() if n.endswith(".zip")]
        assert len(nodes) == FAULT_REPLICAS  # H2O's own log archive of each node
        for node in nodes:
            with zipfile.ZipFile(io.BytesIO(logs.read(node))) as z:
                text += b"".join(z.read(n) for n in z.namelist())
    assert b"-jks_pass" in text  # H2O logs its arguments: the keystore's password was there, masked
    for secret in (bed_s3.secret_key, bed_s3.access_key, bed_tls.password):
        assert secret.encode() not in text
    assert leftovers(k8s_bed, results["create_cluster"]["name"])["pods"] == 0


def test_the_shipped_janitor_dag_reaps_a_kubernetes_orphan(k8s_bed, k8s_airflow):
    """A cluster whose worker died before its teardown (its run is gone), and one in use: the janitor
    task of the pipelines' namespace deletes the first, PodDisruptionBudget and anchor included. Once
    no pipeline file names the namespace, the janitor still sweeps it from its memory."""
    from datetime import date, timedelta

    from h2o_tasks.cluster.base import ClusterSpec
    from h2o_tasks.cluster.kubernetes import KubernetesBackend
    from tests.fixtures.k8s_bed import cluster_config

    env, log = k8s_airflow
    backend = KubernetesBackend(k8s_bed.airflow, namespace=NAMESPACE, endpoint_mode="pod-ip")
    orphan = backend.create(ClusterSpec.for_run("k8s-delay", "h2o_train__k8s-delay", "manual__killed-worker",
                                                cluster_config(replicas=1)))
    kept = backend.create(ClusterSpec.for_run("k8s-delay", "", "", cluster_config(replicas=1)))  # no run: by expiry
    try:
        rc, states, results = run(env, log, "h2o_janitor", date.today().isoformat())
        assert rc == 0 and set(states.values()) == {"success"}, states
        swept = results[f"delete_abandoned_kubernetes_{NAMESPACE}"]
        assert swept["deleted"] == [orphan.name] and "no longer exists" in swept["reasons"][orphan.name]
        left = leftovers(k8s_bed, orphan.name)
        assert (left["pods"], left["services"], left["statefulsets"], left["secrets"], left["processes"]) == \
            (0, 0, 0, 0, 0), left
        assert [c.name for c in backend.list_clusters()] == [kept.name]
        assert "kubernetes/h2o" in results["delete_abandoned_remembered"]["targets"]

        # The pipeline files stop naming the namespace (a file broken or moved while its run went on): no
        # delete_abandoned_kubernetes_* task is left, and the janitor's memory sweeps the namespace.
        later = backend.create(ClusterSpec.for_run("k8s-delay", "h2o_train__k8s-delay", "manual__file-broken",
                                                   cluster_config(replicas=1)))
        local_only = dag_folder.make(Path(env["AIRFLOW_HOME"]) / "dags-local-only")
        dag_folder.write_pipeline(local_only, "arrival_delay", dag_folder.example())
        (local_only / "pipelines" / "broken.yaml").write_text("name: k8s-delay\ncluster: {backend: kubernetes\n")
        moved = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(local_only)}
        rc, states, results = run(moved, log, "h2o_janitor", (date.today() + timedelta(days=1)).isoformat())
        assert rc == 0 and set(states) == {"delete_abandoned_local", "delete_abandoned_remembered",
                                             "sweep_hive_staging"}, states
        swept = results["delete_abandoned_remembered"]["swept"]["kubernetes/h2o"]
        assert swept["deleted"] == [later.name] and "no longer exists" in swept["reasons"][later.name], swept
        assert [c.name for c in backend.list_clusters()] == [kept.name]
    finally:
        for info in backend.list_clusters():
            backend.delete(info)


def task_state(home: Path, dag_id: str, task_id: str) -> str | None:
    """The state of ``task_id`` in the newest run of ``dag_id``, read from Airflow's SQLite database."""
    try:
        with sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT ti.state FROM task_instance ti JOIN dag_run dr ON dr.run_id = ti.run_id "
                             "AND dr.dag_id = ti.dag_id WHERE ti.dag_id = ? AND ti.task_id = ? "
                             "ORDER BY dr.id DESC LIMIT 1", (dag_id, task_id)).fetchone()
    except sqlite3.OperationalError:  # locked by the writer, or not created yet: ask again
        return None
    return row[0] if row else None


def wait_for(what: str, predicate, timeout: float, proc: subprocess.Popen | None = None, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the DAG run ended (rc={proc.returncode}) before {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def cluster_login(k8s_bed, pipeline: str) -> Login:
    """The run's REST login, read from its Secret as a user with the Role would (one run of ``pipeline``)."""
    import base64

    from kubernetes import client

    core = client.CoreV1Api(k8s_bed.admin)
    (secret,) = core.list_namespaced_secret(NAMESPACE, label_selector=f"h2o-airflow/pipeline={pipeline}").items
    ca = base64.b64decode(core.read_namespaced_secret(TLS_SECRET, NAMESPACE).data["ca.crt"])
    return Login("h2o", base64.b64decode(secret.data["password"]).decode(), ca_file=ca_file(ca))


def gbm_running(ip: str, login: Login) -> bool:
    """H2O's own jobs list shows a model being built (the training has really started)."""
    try:
        with urlopen(f"https://{ip}:54321/3/Jobs", login, 5) as resp:
            jobs = json.load(resp)["jobs"]
    except Exception:
        return False
    return any(j["status"] == "RUNNING" and "Model" in (j["dest"]["type"] or "") for j in jobs)


def test_a_pod_killed_during_training_is_rebuilt_by_the_tasks_retry_and_the_run_succeeds(k8s_bed, k8s_airflow):
    """cluster.rebuild_on_loss (the default): the train task fails retryably when the cloud loses a
    node; its retry saves the lost cloud's evidence, makes the cluster again under the same name,
    imports the window again and trains again; the run succeeds with no manual clear."""
    from kubernetes import client

    env, log = k8s_airflow
    home, dag_id = Path(env["AIRFLOW_HOME"]), "h2o_train__k8s-slow"
    core = client.CoreV1Api(k8s_bed.admin)
    proc, ip, _ = start_until_training(k8s_bed, env, log, "k8s-slow", DAY)
    try:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector="h2o-airflow/pipeline=k8s-slow").items
        victim = next(p for p in pods if p.status.pod_ip != ip)
        core.delete_namespaced_pod(victim.metadata.name, NAMESPACE, grace_period_seconds=0)
        wait_for("the train task to fail and wait for its retry",
                 lambda: task_state(home, dag_id, "train") == "up_for_retry", 120, proc)
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
    text = log.read_text(errors="replace")
    assert rc == 0, text[-3000:]
    report = {r.task: r for r in airflow_local.run_report(dag_id, DAY, env)}
    assert {t: r.state for t, r in report.items()} == dict.fromkeys(report, "success")
    assert report["train"].try_number == 2 and report["export_and_promote"].try_number == 1
    # the loss was reported as such, the lost cloud's evidence saved, then the cluster made again
    assert "lost a node during training" in text and "rebuild_on_loss" in text
    assert "rebuilding it (cluster.rebuild_on_loss)" in text and "made again; its leader is at" in text
    assert report["export_and_promote"].result["promoted"] in (True, False)
    name = report["create_cluster"].result["name"]
    assert leftovers(k8s_bed, name) == {"pods": 0, "services": 0, "statefulsets": 0, "secrets": 0, "processes": 0,
                                        "netns": 0}


def test_the_api_server_down_during_training_does_not_fail_the_run(k8s_bed, k8s_airflow):
    """Only positive evidence fails a task at once; a cluster that cannot be observed is waited for
    (cluster.unobservable_grace_s). The API server stops for 40 s while H2O trains, then starts again."""
    env, log = k8s_airflow
    dag_id, day = "h2o_train__k8s-patient", "2013-03-04"
    mark = log.stat().st_size
    proc, ip, login = start_until_training(k8s_bed, env, log, "k8s-patient", day)
    try:
        k8s_bed.control_plane.stop_apiserver()
        try:
            time.sleep(40)  # the outage itself (a scenario, not a measured time)
            still_training = gbm_running(ip, login)
        finally:
            k8s_bed.control_plane.start_apiserver()
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        k8s_bed.control_plane.restart_controllers()  # the next tests meet controllers that watch again
    text = log.read_bytes()[mark:].decode(errors="replace")
    print(f"API server down 40 s during training; GBM still running when it came back: {still_training}")
    assert rc == 0, text[-3000:]
    report = {r.task: r for r in airflow_local.run_report(dag_id, day, env)}
    assert set(r.state for r in report.values()) == {"success"}, {t: r.state for t, r in report.items()}
    assert report["train"].try_number == 1  # no retry, no rebuild: the same cloud trained the model
    # the watch saw the cluster unobservable while H2O trained, and waited instead of failing the task
    assert "as ready during training (StatusUnknown" in text
    assert "rebuild" not in text.lower().replace("rebuild_on_loss", "")


def start_until_training(k8s_bed, env, log, pipeline: str, day: str) -> tuple[subprocess.Popen, str, Login]:
    """``airflow dags test`` of the pipeline's training DAG, returned once H2O builds its GBM (seen in
    ``/3/Jobs``), with the leader pod's address and the cluster's login (an unauthenticated call: 401)."""
    home, dag_id = Path(env["AIRFLOW_HOME"]), f"h2o_train__{pipeline}"
    with open(log, "ab") as out:
        proc = subprocess.Popen(airflow_local.argv(env, ["dags", "test", dag_id, day]),
                                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for("training to start", lambda: task_state(home, dag_id, "train") == "running", 600, proc)
        ip = wait_for("the cloud's leader", lambda: _leader_ip(k8s_bed, pipeline), 120, proc)
        login = cluster_login(k8s_bed, pipeline)
        wait_for("H2O to build the GBM", lambda: gbm_running(ip, login), 300, proc)
        with pytest.raises(urllib.error.HTTPError) as refused:  # only the run's login opens its REST API
            urllib.request.urlopen(f"https://{ip}:54321/3/Jobs", timeout=10, context=login.ssl_context())
        assert refused.value.code == 401
    except BaseException:
        proc.terminate()
        proc.wait(timeout=60)
        raise
    return proc, ip, login


def _leader_ip(k8s_bed, pipeline: str) -> str:
    from kubernetes import client

    pods = client.CoreV1Api(k8s_bed.admin).list_namespaced_pod(
        NAMESPACE, label_selector=f"h2o-airflow/pipeline={pipeline}").items
    ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    return ready[0].status.pod_ip if len(pods) == FAULT_REPLICAS and len(ready) == 1 else ""


def backfill_runs(home: Path, dag_id: str) -> dict[str, str]:
    """logical date -> state of the backfill runs of ``dag_id``."""
    try:
        with sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute("SELECT logical_date, state FROM dag_run WHERE dag_id = ? AND run_type = 'backfill'",
                              (dag_id,)).fetchall()
    except sqlite3.OperationalError:
        return {}
    return {str(d)[:10]: s for d, s in rows}


def flow_link_and_page(services: airflow_local.AirflowServices, dag_id: str) -> dict:
    """A backfill run's H2O Flow link, read through the API server, the page it opens as the admin, and
    what the same URL gives a caller with no login."""
    run = services.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", query={"run_type": "backfill"})["dag_runs"][0]
    links = services.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances/"
                                "create_cluster/links")["extra_links"]
    link = links["H2O Flow"]
    try:
        services.fetch("GET", link, auth=False)
        anonymous = 200
    except airflow_local.AirflowAPIError as exc:
        anonymous = exc.code
    return {"run_id": run["dag_run_id"], "day": run["logical_date"][:10], "link": link,
            "page": services.fetch("GET", link), "anonymous": anonymous}


def test_a_backfill_of_three_days_runs_three_clusters_at_once(k8s_bed, k8s_airflow, tmp_path):
    """A backfill as the UI starts it: the real scheduler (LocalExecutor), triggerer and API server.
    Each run's create task holds its ready cluster at a barrier that this test joins too: once the three
    tasks wait there, the three clusters exist at the same time for certain; the test counts them, then
    lets the runs go on."""
    from kubernetes import client

    from h2o_tasks import testhooks

    env, log = k8s_airflow
    home, dag_id, days = Path(env["AIRFLOW_HOME"]), "h2o_score__k8s-delay", ["2013-02-05", "2013-02-06", "2013-02-07"]
    apps = client.AppsV1Api(k8s_bed.admin)
    meet = tmp_path / "meet"
    hooks = {"cluster:ready": f"barrier:{meet}:{len(days) + 1}:900"}  # the three create tasks and this test

    def statefulsets() -> set[str]:
        return {s.metadata.name for s in apps.list_namespaced_stateful_set(
            NAMESPACE, label_selector="h2o-airflow/pipeline=k8s-delay").items}

    def at_barrier() -> int:
        return sum(1 for p in meet.iterdir() if p.name.startswith("cluster_ready-")) if meet.exists() else 0

    seen: set[str] = set()
    held: set[str] = set()
    most = 0
    # the backfill is asked for before the components start: SQLite has one writer, and a CLI write
    # racing the scheduler's fails with "database is locked"
    assert airflow_local.airflow(["dags", "reserialize"], env, log, timeout=300) == 0
    assert airflow_local.airflow(["dags", "unpause", dag_id], env, log, timeout=300) == 0
    # a one-node cluster per date (the run parameter the UI's backfill dialog sets): three clouds, three JVMs
    assert airflow_local.airflow(["backfill", "create", "--dag-id", dag_id, "--from-date", days[0], "--to-date", days[-1],
                                  "--max-active-runs", "3", "--dag-run-conf", json.dumps({"replicas": 1})],
                                 env, log, timeout=300) == 0, log.read_text()[-2000:]
    t0 = time.monotonic()
    services = airflow_local.AirflowServices.start({**env, testhooks.ENV: json.dumps(hooks)},
                                                   tmp_path / "airflow-logs")
    started = time.monotonic() - t0
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            names = statefulsets()
            seen |= names
            most = max(most, len(names))
            if not held and at_barrier() == len(days):  # every create task holds its ready cluster
                held = statefulsets()
                (meet / "cluster_ready-test").touch()  # the last one in: the runs go on
            runs = backfill_runs(home, dag_id)
            if len(runs) == 3 and all(s in ("success", "failed") for s in runs.values()):
                break
            time.sleep(1)
        flow = flow_link_and_page(services, dag_id)
    finally:
        services.stop()
    print(f"backfill of {len(days)} days: Airflow components healthy in {started:.0f}s, runs done "
          f"{time.monotonic() - t0 - started:.0f}s later; {len(seen)} clusters, at most {most} at once")
    assert sorted(runs) == days and set(runs.values()) == {"success"}, (runs, services.log_dir)
    assert len(held) == 3 and held == seen, (held, seen)  # three clusters, all alive at the same time
    assert most <= 3, most  # never more than the backfill's max-active-runs
    for day in days:
        report = {r.task: r for r in airflow_local.run_report(dag_id, day, env)}
        assert report["score"].result["rows_scored"] > 800, report["score"]
        assert report["create_cluster"].result["name"] in held
        assert report["create_cluster"].result["replicas"] == 1  # the backfill's run conf reached each run
    # the create task's H2O Flow link: no Ingress, so the plugin's page with the exact port-forward
    cluster = {r.task: r for r in airflow_local.run_report(dag_id, flow["day"], env)}["create_cluster"].result["name"]
    assert flow["link"] == f"{services.url}/h2o/flow/{dag_id}/{quote(flow['run_id'], safe='')}/create_cluster"
    assert f"kubectl --namespace {NAMESPACE} port-forward service/{cluster} 54321:54321" in flow["page"], flow
    assert f"get secret {cluster}-login" in flow["page"] and flow["anonymous"] == 401
    for name in seen:
        assert leftovers(k8s_bed, name) == {"pods": 0, "services": 0, "statefulsets": 0, "secrets": 0, "processes": 0,
                                        "netns": 0}
