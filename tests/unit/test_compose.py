"""docker-compose.yaml agrees with the code: services, ports, versions and settings."""

import json
import re
from pathlib import Path

import yaml

from devtools.stack import s3server

ROOT = Path(__file__).resolve().parents[2]


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def pins():
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_services_present():
    services = compose()["services"]
    assert {"postgres", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
            "s3", "hive", "h2o"} <= set(services)
    assert services["airflow-triggerer"]["command"] == "triggerer"


def test_versions_match_the_pins():
    c, p = compose(), pins()
    dockerfile = c["services"]["airflow-scheduler"]["build"]["dockerfile_inline"]
    assert f"apache/airflow:{p['apache-airflow']}-python3.11" in dockerfile
    assert "requirements.txt" in dockerfile and "openjdk-17" in dockerfile
    h2o = c["services"]["h2o"]
    assert h2o["build"]["dockerfile"] == "k8s/Dockerfile" and h2o["build"]["args"]["H2O_VERSION"] == p["h2o"]
    assert h2o["image"].endswith(":" + p["h2o"])
    assert f"ARG H2O_VERSION={p['h2o']}" in (ROOT / "k8s" / "Dockerfile").read_text()


def test_connections_point_at_the_services():
    c = compose()
    env = c["services"]["airflow-scheduler"]["environment"]
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    s3_port = c["services"]["s3"]["ports"][0].split(":")[1]
    assert aws["extra"]["endpoint_url"] == f"http://s3:{s3_port}"
    assert (aws["login"], aws["password"]) == (s3server.LOCAL_ACCESS_KEY, s3server.LOCAL_SECRET_KEY)
    hive = json.loads(env["AIRFLOW_CONN_HIVESERVER2_DEFAULT"])
    assert hive["host"] == "hive" and str(hive["port"]) == c["services"]["hive"]["ports"][0].split(":")[1]
    assert hive["extra"]["auth_mechanism"] == "NOSASL"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("/dags") and env["AIRFLOW__CORE__PLUGINS_FOLDER"].endswith("/plugins")
    # the same S3 settings reach the H2O node as JVM properties
    assert "sys.ai.h2o.persist.s3.endPoint=http://s3:5000" in c["services"]["h2o"]["environment"]["JAVA_TOOL_OPTIONS"]
    # every Airflow service shares the same environment
    for name in ("airflow-apiserver", "airflow-dag-processor", "airflow-triggerer", "airflow-init"):
        assert c["services"][name]["environment"] == env


def test_the_triggerer_waits_where_the_tasks_start_the_local_clusters():
    """The LocalExecutor runs tasks in the scheduler's container, so the local backend's JVMs live there:
    the triggerer's readiness wait checks them by process id and asks them on 127.0.0.1, so it must share
    that container's process and network namespaces (and the state directory's volume)."""
    services = compose()["services"]
    scheduler, triggerer = services["airflow-scheduler"], services["airflow-triggerer"]
    assert scheduler["command"] == "scheduler" and triggerer["command"] == "triggerer"
    assert scheduler["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert triggerer["pid"] == triggerer["network_mode"] == "service:airflow-scheduler"
    state = scheduler["environment"]["H2O_AIRFLOW_STATE_DIR"]
    assert any(v.endswith(":" + state) for v in scheduler["volumes"]) and triggerer["volumes"] == scheduler["volumes"]
    # the other Airflow components start no cluster and keep their own namespaces
    for name in ("airflow-apiserver", "airflow-dag-processor", "airflow-scheduler"):
        assert "pid" not in services[name] and "network_mode" not in services[name], name


def test_hive_is_the_server_the_sinks_sql_is_tested_on():
    """The stack's HiveServer2 is the Spark Thrift Server of the version the tests run (requirements-dev.txt),
    with the settings the tests' server has."""
    dev = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.M))
    hive = compose()["services"]["hive"]
    assert hive["image"] == f"apache/spark:{dev['pyspark']}"
    argv = hive["command"]
    assert argv[argv.index("--class") + 1] == "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
    settings = {argv[i + 1] for i, a in enumerate(argv) if a in ("--conf", "--hiveconf")}
    assert {"hive.server2.authentication=NOSASL", "spark.sql.sources.partitionOverwriteMode=dynamic",
            f"hive.server2.thrift.port={hive['ports'][0].split(':')[1]}"} <= settings
    assert "staging:/staging" in hive["volumes"]  # where the Hive source exports, shared with the tasks


class _Recorder:
    """A DB-API connection that records the SQL it is given; the table exists with the columns ``have``."""

    def __init__(self, have):
        self.sql, self.have, self.rows = [], have, []

    def cursor(self):
        return self

    def execute(self, sql):
        self.sql.append(sql)
        if sql.startswith("SHOW TABLES"):
            self.rows = [("default", "preds", False)] if self.have else []
        elif sql.startswith("DESCRIBE"):
            self.rows = [*self.have, ("# Partition Information", ""), ("dt", "string")]
        elif sql.startswith("SELECT count"):
            self.rows = [(3,)]

    def fetchall(self):
        return self.rows

    def fetchone(self):
        return self.rows[0]


def test_the_sinks_sql_is_hiveql_that_both_servers_take():
    """Every statement the Hive sink emits is plain HiveQL (external Parquet table, partitions by location):
    nothing Spark-only (temporary views, USING data sources) that Apache Hive would refuse."""
    from h2o_tasks import hive_sink

    cols = [("flight_id", "string"), ("p1", "double")]
    new, old = _Recorder([]), _Recorder([("flight_id", "string")])
    hive_sink.ensure_table(new, "preds", cols, "dt", "/warehouse/preds")
    hive_sink.ensure_table(old, "preds", cols, "dt", "/warehouse/preds")  # adds p1
    hive_sink.set_location(old, "preds", {"dt": "2013-02-04"}, "/warehouse/preds/dt=2013-02-04/a1")
    hive_sink.partition_rows(old, "preds", {"dt": "2013-02-04"})
    statements = new.sql + old.sql
    assert any(s.startswith("CREATE EXTERNAL TABLE") and "STORED AS PARQUET" in s for s in statements)
    assert any(s.startswith("ALTER TABLE `preds` ADD COLUMNS") for s in statements)
    for s in statements:
        assert not re.search(r"\bUSING\b|\bTEMPORARY\b|\bVIEW\b|CREATE OR REPLACE", s, re.I), s
