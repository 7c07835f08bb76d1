"""Scoring a CSV with a MOJO and no cluster: H2O's ``PredictCsv`` output, on every core.

The scorer is one JVM running :file:`java/ParallelPredictCsv.java` (compiled once against the
genmodel classes of the pinned installation, :func:`genmodel_jar`, and cached): threads over byte ranges of the input, each row
converted with the encoders H2O's ``EasyPredictModelWrapper`` builds and scored with
``score0`` (GBM and DRF: over their trees decoded once, not their compressed bytes per row),
written in ``PredictCsv --decimal``'s format. Its output is byte-identical to one
``PredictCsv`` over the whole file (the tests and the benchmark compare them). Without a
``javac`` it falls back to ``PredictCsv`` itself, one JVM per row chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from h2o_tasks.cache import cache_dir

log = logging.getLogger(__name__)

GENMODEL_MAIN = "hex.genmodel.tools.PredictCsv"
LAUNCHER_CLASS = "ParallelPredictCsv"
MIN_ROWS_PER_THREAD = 50_000  # below this another thread (or JVM) costs more than it saves
HEAP = "1g"  # rows stream through: the heap holds the model and one buffer per thread
# the launcher is a batch job: the throughput collector was 2-13% faster than G1 on flights (3 paired runs)
LAUNCHER_JVM_OPTIONS = ("-XX:+UseParallelGC",)


def launcher_source() -> str:
    return (resources.files("h2o_tasks") / "java" / f"{LAUNCHER_CLASS}.java").read_text()


def default_workers() -> int:
    """The CPU cores this process may use (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def genmodel_jar() -> Path:
    """The genmodel classes to score with: the installed ``h2o`` package's ``h2o.jar`` (``hex.genmodel`` inside).

    Never a jar from the registry: whoever can write the registry prefix could otherwise run
    code on the worker. The registry's ``h2o-genmodel.jar`` stays an artifact for users.
    """
    from h2o_tasks.cluster.local import h2o_jar

    return h2o_jar()


def genmodel_command(genmodel_jar: Path, mojo: Path, input_csv: Path, output_csv: Path, java: str = "java",
                     heap: str = HEAP) -> list[str]:
    """The ``PredictCsv`` command line for one CSV (decimal output, as ``h2o.mojo_predict_csv``)."""
    return [java, f"-Xmx{heap}", "-cp", str(genmodel_jar), GENMODEL_MAIN, "--mojo", str(mojo),
            "--input", str(input_csv), "--output", str(output_csv), "--decimal"]


def genmodel_predict(genmodel_jar: Path, mojo: Path, input_csv: Path, output_csv: Path, java: str = "java") -> None:
    """Score a CSV with one H2O ``PredictCsv`` JVM (one thread)."""
    _run_all([genmodel_command(genmodel_jar, mojo, input_csv, output_csv, java)])


def launcher_classpath(genmodel_jar: Path, java: str = "java") -> Path | None:
    """The directory of the compiled launcher (once per source and genmodel jar, cached), or None without a ``javac``."""
    source = launcher_source()
    jar = Path(genmodel_jar).resolve()
    stat = jar.stat()  # the jar is big (h2o.jar: 280 MB): identified by path, size and time, not read
    digest = hashlib.sha256(f"{source}\0{jar}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / f"genmodel-launcher-{digest}"
    if (target / f"{LAUNCHER_CLASS}.class").exists():
        return target
    java_path = shutil.which(java)
    javac = shutil.which("javac", path=str(Path(java_path).resolve().parent)) if java_path else None
    javac = javac or shutil.which("javac")
    if javac is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".launcher-", dir=target.parent))
    try:
        (tmp / f"{LAUNCHER_CLASS}.java").write_text(source)
        res = subprocess.run([javac, "-nowarn", "--release", "8", "-cp", str(genmodel_jar), "-d", str(tmp),
                              str(tmp / f"{LAUNCHER_CLASS}.java")], capture_output=True, text=True)
        if res.returncode != 0:
            return None
        with contextlib.suppress(OSError):  # another process compiled it first
            tmp.rename(target)
        return target if (target / f"{LAUNCHER_CLASS}.class").exists() else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def split_csv(input_csv: Path, parts: int, workdir: Path) -> list[Path]:
    """Cut a CSV into ``parts`` files at line ends, each with the header (one record per line assumed)."""
    size = input_csv.stat().st_size
    with open(input_csv, "rb") as src:
        header = src.readline()
        body_start = src.tell()
        bounds = [body_start]
        for i in range(1, parts):
            src.seek(max(body_start + (size - body_start) * i // parts, bounds[-1]))
            src.readline()  # to the end of the line the cut fell into
            bounds.append(min(src.tell(), size))
        bounds.append(size)
        chunks = []
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            if hi <= lo:
                continue
            path = workdir / f"in-{i:03d}.csv"
            with open(path, "wb") as out:
                out.write(header)
                src.seek(lo)
                remaining = hi - lo
                while remaining:
                    block = src.read(min(remaining, 1 << 22))
                    out.write(block)
                    remaining -= len(block)
            chunks.append(path)
    return chunks


def _run_all(commands: list[list[str]]) -> None:
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for c in commands]
    errors = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:  # PredictCsv reports on stdout, the launcher on stderr
            text = (err or out).decode(errors="replace").strip()
            errors.append(f"MOJO scoring failed (exit {proc.returncode}): {text[-2000:]}")
        for line in err.decode(errors="replace").splitlines():
            if line.startswith(f"{LAUNCHER_CLASS}: "):  # the way the launcher scored the rows
                log.info("Offline scorer: %s", line.split(": ", 1)[1])
    if errors:
        raise RuntimeError("; ".join(errors))


def estimated_rows(input_csv: Path) -> int:
    """Data rows of a CSV, estimated from its size and the line length of its first 64 KiB."""
    with open(input_csv, "rb") as f:
        f.readline()
        sample = f.read(1 << 16)
    return input_csv.stat().st_size * max(sample.count(b"\n"), 1) // max(len(sample), 1)


def predict_csv(genmodel_jar: Path, mojo: Path, input_csv: Path, output_csv: Path, *, workers: int | None = None,
                java: str = "java") -> int:
    """Score a CSV with the MOJO on ``workers`` threads (default: every core); returns the threads used.

    Same bytes as one ``PredictCsv --decimal`` over the whole file. Inputs under
    ``MIN_ROWS_PER_THREAD`` rows per thread use fewer threads. A failed run leaves no output.
    """
    workers = workers or default_workers()
    input_csv, output_csv = Path(input_csv), Path(output_csv)
    parts = max(1, min(workers, estimated_rows(input_csv) // MIN_ROWS_PER_THREAD))
    launcher = launcher_classpath(genmodel_jar, java)
    try:
        if launcher is not None:
            _run_all([[java, f"-Xmx{HEAP}", *LAUNCHER_JVM_OPTIONS, "-cp", f"{genmodel_jar}{os.pathsep}{launcher}",
                       LAUNCHER_CLASS, str(mojo), str(input_csv), str(output_csv), str(parts)]])
        elif parts == 1:
            genmodel_predict(genmodel_jar, mojo, input_csv, output_csv, java)
        else:
            parts = _predict_chunks(genmodel_jar, mojo, input_csv, output_csv, parts, java)
    except BaseException:
        output_csv.unlink(missing_ok=True)
        raise
    return parts


def _predict_chunks(genmodel_jar: Path, mojo: Path, input_csv: Path, output_csv: Path, parts: int, java: str) -> int:
    """One ``PredictCsv`` JVM per row chunk, the outputs joined in order (no ``javac`` here)."""
    work = Path(tempfile.mkdtemp(prefix="h2o-predict-", dir=output_csv.parent))
    try:
        chunks = split_csv(input_csv, parts, work)
        outputs = [p.with_name(f"{p.stem}.out.csv") for p in chunks]
        _run_all([genmodel_command(genmodel_jar, mojo, i, o, java) for i, o in zip(chunks, outputs, strict=True)])
        with open(output_csv, "wb") as out:
            for i, path in enumerate(outputs):
                with open(path, "rb") as src:
                    if i:
                        src.readline()  # the header, already written
                    shutil.copyfileobj(src, out, 1 << 22)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return len(chunks)
