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
