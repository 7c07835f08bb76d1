"""``python -m h2o_tasks render-manifests`` as a user runs it: its exit codes, its messages and the
files it writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devtools import dag_folder
from tests.fixtures.pipelines import EXAMPLE

ROOT = Path(__file__).resolve().parents[2]


def render(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "h2o_tasks", "render-manifests", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def test_the_example_renders_one_parseable_file_per_object(tmp_path):
    out = tmp_path / "manifests"
    done = render("--config", str(EXAMPLE), "--run-id", "manual__2013-02-04", "--out", str(out),
                  "--namespace", "ml-jobs")
    assert done.returncode == 0, done.stderr
    printed = [Path(line) for line in done.stdout.split()]
    assert printed and sorted(printed) == sorted(out.iterdir())  # it prints exactly what it wrote
    objects = [yaml.safe_load(p.read_text()) for p in printed]
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
        assert obj["metadata"]["namespace"] == "ml-jobs"
    (sts,) = by_kind["StatefulSet"]
    assert sts["spec"]["replicas"] == 2 and sts["spec"]["podManagementPolicy"] == "Parallel"
    headless = [s for s in by_kind["Service"] if s["spec"].get("clusterIP") == "None"]
    assert len(headless) == 1 and headless[0]["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["serviceName"] == headless[0]["metadata"]["name"]
    # the default DAG id is the pipeline's training DAG, recorded on every object
    name = sts["metadata"]["name"]
    assert name.startswith("h2o-arrival-delay-")
    assert all(o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == sts["metadata"]["labels"][
        "app.kubernetes.io/managed-by"] for o in objects)
    assert "h2o_train__arrival-delay" in yaml.safe_dump(sts["metadata"])


@pytest.mark.parametrize(("write", "needle"), [
    (lambda p: p.write_text(yaml.safe_dump(dag_folder.variant(cluster={"replicas": 0}))), "cluster.replicas = 0"),
    (lambda p: p.write_text("name: x\nfeatures: [unclosed\n"), "is not valid YAML"),
    (lambda p: None, "does not exist"),
], ids=["bad-field", "bad-yaml", "no-file"])
def test_a_bad_pipeline_file_exits_2_with_the_problem_and_writes_nothing(tmp_path, write, needle):
    bad = tmp_path / "bad.yaml"
    write(bad)
    out = tmp_path / "manifests"
    done = render("--config", str(bad), "--run-id", "manual__x", "--out", str(out))
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith(f"error: {bad}") and needle in done.stderr and "Fix: " in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and done.stdout == ""
