"""The Hive UDF's jar built from source (javac against the development classpath), cached, and shipped."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from h2o_tasks import hive_udf


def test_the_cli_builds_the_jar_from_source_and_prints_the_registration(tmp_path):
    res = subprocess.run([sys.executable, "-m", "h2o_tasks", "hive-udf", "build", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    jar = tmp_path / hive_udf.JAR
    assert res.stdout.strip() == str(jar)
    with zipfile.ZipFile(jar) as z:
        names = z.namelist()
    assert "h2o_airflow/hive/H2OPredict.class" in names
    assert not [n for n in names if n.startswith("hex/")]  # the model's own h2o-genmodel.jar is added beside it
    assert f"CREATE TEMPORARY FUNCTION h2o_predict AS '{hive_udf.CLASS}'" in res.stderr
    # the second build comes from the cache: same bytes
    assert hive_udf.build().read_bytes() == jar.read_bytes()


def test_a_compile_error_is_reported_with_javac_s_message(tmp_path, monkeypatch):
    broken = tmp_path / "Broken.java"
    broken.write_text("package h2o_airflow.hive; public class Broken { int x = ; }")
    monkeypatch.setattr(hive_udf, "sources", lambda: [broken])
    monkeypatch.setenv("H2O_AIRFLOW_CACHE", str(tmp_path / "cache"))
    try:
        hive_udf.build()
    except hive_udf.BuildError as exc:
        assert "javac failed" in str(exc) and "Broken.java" in str(exc)
    else:
        raise AssertionError("a broken source built")
    assert not list((tmp_path / "cache").rglob("*.jar"))  # nothing half-built is cached
