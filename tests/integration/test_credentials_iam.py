"""Temporary credentials, whole.

The DAGs against an S3 API that enforces IAM (moto server, its STS on the same port): an Airflow
connection that assumes a role (``role_arn``) and one with an IAM user's static keys both run the
pipeline end to end, and the server refuses the role's keys without their session token.

The moto server refuses every request of H2O's own S3 client (AWS SDK for Java 1.12) with
SignatureDoesNotMatch once IAM is enforced, static keys included: it does not reproduce that SDK's
signature. So the runs here read and write S3 from the tasks (the default fetch path, the offline
scorer), and a second test shows, on a server that records what the cloud sends, that H2O signs
its S3 requests with the session token it was given."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from devtools.stack import s3server, seed
from h2o_tasks import s3

pytestmark = pytest.mark.integration
DAY = "2013-02-04"
MOTO_TOKEN_PREFIX = "FQoGZXIvYXdzEBYaD"  # every session token moto's STS issues starts so


@pytest.fixture(scope="module")
def iam_s3(tmp_path_factory, flights_parquet_dir):
    server = s3server.start(tmp_path_factory.mktemp("moto-iam"), iam_auth=True)
    try:
        ids = s3server.with_iam_identities(server)
        seed.seed_s3(ids.assume(), flights_parquet_dir)
        yield ids
    finally:
        server.stop()


def _connection(ids, role: bool) -> str:
    url = ids.user_settings.endpoint_url
    extra = {"endpoint_url": url, "region_name": "us-east-1"}
    if role:
        extra |= {"role_arn": ids.role_arn, "service_config": {"sts": {"endpoint_url": url}}}
    return json.dumps({"conn_type": "aws", "login": ids.user_settings.access_key,
                       "password": ids.user_settings.secret_key, "extra": extra})


def _found(roots: list[Path], needles: list[str]) -> list[str]:
    """Files under ``roots`` holding any of ``needles`` (bytes, so the database and archives count too)."""
    hits = []
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file()) if root.exists() else []:
            data = path.read_bytes()
            hits += [f"{path}: {n[:6]}..." for n in needles if n.encode() in data]
    return hits


def test_the_dags_run_with_an_assumed_role_and_with_static_keys_where_iam_is_enforced(airflow_runner, iam_s3):
    ids = iam_s3
    role = ids.assume()
    bucket = "h2o-demo"
    assert role.client().list_objects_v2(Bucket=bucket, MaxKeys=1)["KeyCount"] == 1
    with pytest.raises(ClientError) as refused:  # the token is what the server checks: without it, refused
        dataclasses.replace(role, session_token="").client().list_objects_v2(Bucket=bucket, MaxKeys=1)
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    source = {"kind": "s3", "training_window_days": 7, "s3": {"uri": f"s3://{bucket}/flights", "format": "parquet"}}
    passwords, running = _collect_cluster_passwords(Path(airflow_runner.env["H2O_AIRFLOW_STATE_DIR"]))
    for how, role_conn in (("role", True), ("keys", False)):
        airflow_runner.env["AIRFLOW_CONN_AWS_DEFAULT"] = _connection(ids, role_conn)
        name = airflow_runner.add_pipeline(f"iam_{how}.yaml", name=f"iam-{how}", source=source,
                                           registry_uri=f"s3://{bucket}/models/iam-{how}",
                                           scoring={"output_uri": f"s3://{bucket}/predictions/iam-{how}",
                                                    "hive_table": "", "engine": "offline", "after_training": False})
        # the scoring DAG once: its offline scorer reads S3 as the training DAG does, with the same settings
        dags = [f"h2o_train__{name}", f"h2o_score__{name}"] if how == "role" else [f"h2o_train__{name}"]
        for dag_id in dags:
            rc, report = airflow_runner.test(dag_id, DAY)
            states = {r.task: r.state for r in report}
            assert rc == 0 and set(states.values()) == {"success"}, (how, dag_id, states, airflow_runner.log_tail())
        client = role.client()
        champion = json.loads(s3.read_bytes(client, f"s3://{bucket}/models/iam-{how}/champion.json"))
        assert any(k.endswith("/model.zip") for k in s3.list_keys(client, f"s3://{bucket}/models/iam-{how}/")), how
        if how == "role":
            assert any(k.endswith("_SUCCESS") for k in s3.list_keys(client, f"s3://{bucket}/predictions/iam-role/"))
        assert champion["version"], how
        assert airflow_runner.clusters_left() == []

    running.clear()
    assert len(passwords) == 2, len(passwords)  # one cluster per training run (offline scoring has none)

    # nothing secret where the runs leave things: logs, the metadata database (XCom), the state directory
    with sqlite3.connect(airflow_runner.home / "airflow.db") as db:
        xcoms = json.dumps(db.execute("SELECT value FROM xcom").fetchall(), default=str)
    for secret in (ids.user_settings.secret_key, MOTO_TOKEN_PREFIX, *passwords):
        assert secret not in xcoms, secret[:6]
    roots = [airflow_runner.home / "logs", airflow_runner.log.parent, Path(airflow_runner.env["H2O_AIRFLOW_STATE_DIR"])]
    assert _found(roots, [ids.user_settings.secret_key, MOTO_TOKEN_PREFIX, *passwords]) == []


def _collect_cluster_passwords(state_dir: Path) -> tuple[set[str], threading.Event]:
    """Read each cluster's REST password while it lives (as its owner can), until the event is cleared:
    the search above then looks for them too, once their clusters (and password files) are gone."""
    found: set[str] = set()
    running = threading.Event()
    running.set()

    def collect() -> None:
        while running.is_set():
            for path in state_dir.glob("clusters/*/login/password"):
                with contextlib.suppress(OSError):
                    text = path.read_text()
                    if len(text) >= 32:  # whole (a file being written reads short)
                        found.add(text)
            time.sleep(0.1)

    threading.Thread(target=collect, daemon=True).start()
    return found, running


def test_the_cloud_signs_its_s3_requests_with_the_session_token(tmp_path):
    """A server in the place of S3 records what the cloud sends after the hand-over (the client runs in a
    process of its own: the h2o module's connection is process-wide, and this session's tests share one)."""
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from h2o_tasks.cluster.base import ClusterSpec
    from h2o_tasks.cluster.local import LocalBackend
    from h2o_tasks.config import ClusterConfig

    seen: list[dict[str, str]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers))
            self.send_response(403)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    backend = LocalBackend(state_dir=tmp_path / "state")
    info = backend.create(ClusterSpec.for_run("token", "token", "r1", ClusterConfig(replicas=1, memory="1g", nthreads=1),
                                              s3_endpoint=url))
    client = (
        "import sys, h2o\n"
        "from h2o_tasks import session\n"
        "from h2o_tasks.cluster.local import LocalBackend\n"
        "from h2o_tasks.cluster.base import ClusterInfo\n"
        "from h2o_tasks.s3 import S3Settings\n"
        "login = LocalBackend(state_dir=sys.argv[3]).login(ClusterInfo(sys.argv[4], 'local'))\n"
        "session.connect(sys.argv[1], S3Settings(endpoint_url=sys.argv[2], access_key='ASIATEMPORARY',\n"
        "                secret_key='s3cr3t', session_token='the-session-token'), login=login)\n"
        "try:\n"
        "    h2o.import_file('s3://bucket/a.csv')\n"
        "except Exception:\n"
        "    pass  # refused by the recorder: what matters is what was sent\n"
    )
    try:
        backend.wait_ready(info, 180)
        done = subprocess.run([sys.executable, "-c", client, info.url, url, str(backend.state_dir), info.name],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        backend.delete(info)
        server.shutdown()
    assert seen, "the cloud sent nothing to its S3 endpoint"
    assert seen[0]["X-Amz-Security-Token"] == "the-session-token"
    assert "Credential=ASIATEMPORARY/" in seen[0]["Authorization"]
