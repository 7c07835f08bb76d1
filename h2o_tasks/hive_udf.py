"""The Hive UDF ``h2o_predict``: building its jar, and the SQL that uses it.

The UDF (``h2o_tasks/java/hive_udf``, :class:`h2o_airflow.hive.H2OPredict`) scores rows with any
MOJO given by path, so a retrained champion needs no new jar. It is compiled from source, either
by Maven against the declared Hive API (``hive-exec``, provided) and ``h2o-genmodel`` from Maven
Central (``pom.xml``), or by ``javac`` against jars at hand (Spark's, in development). The jar
holds the UDF alone: at run time the model's own ``h2o-genmodel.jar`` (in every registry
version) is added beside it. Built jars are cached like the other built tools.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from h2o_tasks.cache import cache_dir
from h2o_tasks.errors import H2OTasksError

SOURCE_ROOT = Path(__file__).parent / "java" / "hive_udf"
CLASS = "h2o_airflow.hive.H2OPredict"
FUNCTION = "h2o_predict"
JAR = "h2o-hive-udf.jar"


class BuildError(H2OTasksError):
    """The UDF could not be compiled."""


def sources() -> list[Path]:
    return sorted((SOURCE_ROOT / "src" / "main" / "java").rglob("*.java"))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def dev_classpath() -> list[Path]:
    """Hive's and Hadoop's API jars from the installed ``pyspark`` (a development dependency) and the
    pinned ``h2o`` package's jar (the genmodel classes)."""
    from h2o_tasks.mojo_csv import genmodel_jar

    try:
        import pyspark
    except ImportError:
        raise BuildError("no Hive API jars at hand: pyspark is not installed; build with --maven (pom.xml, "
                         "Maven Central) or pass --classpath with hive-exec, hadoop-common and h2o-genmodel") from None
    jars = Path(pyspark.__file__).parent / "jars"
    wanted = [j for j in sorted(jars.glob("*.jar")) if j.name.startswith(("hive-exec", "hive-serde", "hive-common",
                                                                           "hadoop-client-api"))]
    return [*wanted, genmodel_jar()]


def build(out_dir: str | Path | None = None, classpath: list[Path] | None = None, java: str = "java") -> Path:
    """The UDF jar compiled with ``javac`` against ``classpath`` (default :func:`dev_classpath`), cached by
    the sources and the classpath; copied into ``out_dir`` when given."""
    cp = [Path(p).resolve() for p in (classpath or dev_classpath())]
    files = sources()
    key = _digest(*(f.read_text() for f in files), *(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in cp))
    target = cache_dir() / f"hive-udf-{key}" / JAR
    if not target.exists():
        _compile(files, cp, target, java)
    if out_dir is None:
        return target
    out = Path(out_dir) / JAR
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target, out)
    return out


def _javac(java: str) -> str:
    java_path = shutil.which(java)
    javac = shutil.which("javac", path=str(Path(java_path).resolve().parent)) if java_path else None
    javac = javac or shutil.which("javac")
    if javac is None:
        raise BuildError("no javac: install a JDK (openjdk-17-jdk-headless), or build with --maven")
    return javac


def _compile(files: list[Path], classpath: list[Path], target: Path, java: str) -> None:
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".hive-udf-", dir=target.parent.parent))
    try:
        classes = work / "classes"
        res = subprocess.run([_javac(java), "-nowarn", "--release", "8", "-cp", os.pathsep.join(map(str, classpath)),
                              "-d", str(classes), *map(str, files)], capture_output=True, text=True)
        if res.returncode != 0:
            raise BuildError(f"javac failed on the Hive UDF: {res.stderr.strip()[-2000:]}")
        jar = work / "out" / JAR
        jar.parent.mkdir()
        with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nCreated-By: h2o-airflow\r\n\r\n")
            for f in sorted(classes.rglob("*.class")):
                z.write(f, f.relative_to(classes).as_posix())
        with contextlib.suppress(OSError):  # another process built it first
            (work / "out").rename(target.parent)
        if not target.exists():
            raise BuildError(f"the built jar did not land at {target}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_with_maven(out_dir: str | Path, mvn: str = "mvn") -> Path:
    """The UDF jar built by Maven from ``pom.xml`` (hive-exec and h2o-genmodel from Maven Central)."""
    exe = shutil.which(mvn)
    if exe is None:
        raise BuildError(f"no {mvn} on PATH: install Maven, or build with javac (--classpath JARS)")
    work = Path(tempfile.mkdtemp(prefix="hive-udf-mvn-"))
    try:
        shutil.copytree(SOURCE_ROOT, work / "hive_udf")
        res = subprocess.run([exe, "-q", "-B", "-f", str(work / "hive_udf" / "pom.xml"), "package"],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise BuildError(f"mvn package failed: {(res.stdout + res.stderr).strip()[-2000:]}")
        built = next((work / "hive_udf" / "target").glob("h2o-hive-udf-*.jar"))
        out = Path(out_dir) / JAR
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, out)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def register_sql(udf_jar: str | Path, genmodel_jar: str | Path, name: str = FUNCTION) -> list[str]:
    """The statements that make ``name`` callable in a HiveServer2 session."""
    return [f"ADD JAR '{udf_jar}'", f"ADD JAR '{genmodel_jar}'", f"CREATE TEMPORARY FUNCTION {name} AS '{CLASS}'"]
