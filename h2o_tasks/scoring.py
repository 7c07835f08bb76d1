"""Batch scoring with the champion model, in the cluster or offline from the MOJO.

Both engines check the input against the model's feature schema (a missing feature is an
error; unseen categorical levels are counted), write predictions to a staging prefix, and
commit them to ``{scoring.output_uri}/dt=YYYY-MM-DD/`` (see :mod:`h2o_tasks.sinks`).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from h2o_tasks import intervals, naming, registry, s3, sinks
from h2o_tasks.cache import cache_dir
from h2o_tasks.config import PipelineConfig
from h2o_tasks.errors import ConfigError, InputDataError, SourceNotFoundError
from h2o_tasks.s3 import S3Settings

HIVE_TYPES = {"int": "BIGINT", "real": "DOUBLE", "enum": "STRING", "string": "STRING", "time": "BIGINT"}


@dataclass(frozen=True)
class ScoreResult:
    engine: str
    model_version: str
    rows_in: int
    rows_scored: int
    output_uri: str
    unseen_levels: dict[str, int]
    seconds: float
    columns: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Champion:
    version: str
    uri: str
    metadata: dict[str, Any]


def champion(client: Any, cfg: PipelineConfig) -> Champion:
    pointer = registry.read_champion(client, cfg.registry_uri)
    if pointer is None:
        raise SourceNotFoundError("registry_uri", cfg.registry_uri, "has no champion model yet",
                                  "run the training DAG (a model must pass the quality gate) before scoring")
    meta = registry.load_metadata(client, cfg.registry_uri, pointer.version)
    return Champion(pointer.version, registry.version_uri(cfg.registry_uri, pointer.version), meta)


def output_uris(cfg: PipelineConfig, day: date, run_id: str) -> tuple[str, str]:
    """(staging, final) prefixes of an interval's predictions."""
    if not cfg.scoring.output_uri:
        raise ConfigError("scoring.output_uri", "", "is required to score", "set scoring.output_uri: s3://BUCKET/PREFIX")
    final = s3.join(cfg.scoring.output_uri, f"dt={day.isoformat()}")
    staging = s3.join(cfg.scoring.output_uri, "_staging", f"dt={day.isoformat()}-{naming.run_hash('score', run_id)}")
    return staging, final


def _check_ids(cfg: PipelineConfig, columns: list[str]) -> list[str]:
    for i, col in enumerate(cfg.scoring.id_columns):
        if col not in columns:
            raise InputDataError(f"scoring.id_columns[{i}]", col, f"is not a column of the scoring input "
                                                                  f"(columns: {', '.join(columns)})",
                                 "fix scoring.id_columns")
    return list(cfg.scoring.id_columns)


def score_in_cluster(h2o: Any, frame: Any, cfg: PipelineConfig, client: Any, start: date, end: date, *,
                     run_id: str) -> ScoreResult:
    """Distributed predict: the cluster imports the champion MOJO from S3 and writes predictions to S3."""
    from h2o_tasks.frames import check_scoring_input

    t0 = time.monotonic()
    champ = champion(client, cfg)
    staging, final = output_uris(cfg, start, run_id)
    ids = _check_ids(cfg, frame.columns)
    frame, report = check_scoring_input(frame, champ.metadata["features"], champ.version)
    model = h2o.import_mojo(s3.join(champ.uri, "model.zip"))
    try:
        preds = model.predict(frame)
        out = frame[ids].cbind(preds) if ids else preds
        s3.delete_prefix(client, staging)
        h2o.export_file(out, staging, force=True, parts=-1, write_checksum=False)
        rows_scored = out.nrows
        columns = [(c, HIVE_TYPES.get(t, "STRING")) for c, t in out.types.items()]
        columns = [(c, t) for c, t in sorted(columns, key=lambda ct: out.columns.index(ct[0]))]
        h2o.remove(out)
        h2o.remove(preds)
    finally:
        h2o.remove(model)
    if rows_scored != frame.nrows:
        raise InputDataError("predictions", rows_scored, f"differ from the {frame.nrows} input rows",
                             "this is a bug: report it with the task log")
    sinks.commit_s3(client, staging, final)
    return ScoreResult("cluster", champ.version, frame.nrows, rows_scored, final, report.unseen_levels,
                       round(time.monotonic() - t0, 2), columns)


def _read_partition(client: Any, cfg: PipelineConfig, start: date, end: date) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from h2o_tasks.sources import s3 as s3_source

    if cfg.source.kind != "s3":
        raise ConfigError("scoring.engine", "offline", "reads S3 partitions only", "use engine: cluster for Hive")
    resolved = s3_source.resolve(client, cfg.source.s3, start, end, all_required=True)
    tables = []
    for uri in resolved.files:
        bucket, key = s3.split_uri(uri)
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if cfg.source.s3.format == "parquet":
            tables.append(pq.read_table(io.BytesIO(body)))
        else:
            import pyarrow.csv as pcsv

            tables.append(pcsv.read_csv(io.BytesIO(body)))
    return pa.concat_tables(tables, promote_options="default").to_pandas()


GENMODEL_MAIN = "hex.genmodel.tools.PredictCsv"
MIN_ROWS_PER_JVM = 50_000  # below this a second JVM costs more (start, JIT warm-up) than it saves


def default_workers() -> int:
    """The CPU cores this process may use (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def genmodel_command(genmodel_jar: Path, mojo: Path, input_csv: Path, output_csv: Path, java: str = "java",
                     heap: str = "1g") -> list[str]:
    """The ``PredictCsv`` command line for one CSV (decimal output, as ``h2o.mojo_predict_csv``)."""
    return [java, f"-Xmx{heap}", "-cp", str(genmodel_jar), GENMODEL_MAIN, "--mojo", str(mojo),
            "--input", str(input_csv), "--output", str(output_csv), "--decimal"]


def genmodel_predict(genmodel_jar: Path, mojo: Path, input_csv: Path, output_csv: Path, java: str = "java") -> None:
    """Score a CSV with one H2O ``PredictCsv`` JVM (no cluster)."""
    res = subprocess.run(genmodel_command(genmodel_jar, mojo, input_csv, output_csv, java), capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise RuntimeError(f"PredictCsv failed ({res.returncode}): {res.stderr[-2000:]}")


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


# One JVM, one model, one PredictCsv per chunk on its own thread: a single start-up and JIT
# warm-up, and exactly PredictCsv's output (the same class writes every chunk).
LAUNCHER_CLASS = "ChunkedPredictCsv"
LAUNCHER_SOURCE = """\
import hex.genmodel.GenModel;
import hex.genmodel.MojoModel;
import hex.genmodel.tools.PredictCsv;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/** Usage: ChunkedPredictCsv MOJO IN1 OUT1 [IN2 OUT2 ...]: PredictCsv --decimal on each chunk, in parallel. */
public class ChunkedPredictCsv {
  public static void main(String[] args) throws Exception {
    GenModel model = MojoModel.load(args[0]);
    int n = (args.length - 1) / 2;
    ExecutorService pool = Executors.newFixedThreadPool(n);
    List<Future<?>> done = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      PredictCsv p = PredictCsv.make(new String[] {"--mojo", args[0], "--input", args[1 + 2 * i],
                                                   "--output", args[2 + 2 * i], "--decimal"}, model);
      done.add(pool.submit(() -> { p.run(); return null; }));
    }
    try {
      for (Future<?> f : done) f.get();
    } finally {
      pool.shutdown();
    }
  }
}
"""


def launcher_classpath(genmodel_jar: Path, java: str = "java") -> Path | None:
    """The directory of the compiled launcher (compiled once, cached), or None without a ``javac``."""
    import hashlib

    digest = hashlib.sha256(LAUNCHER_SOURCE.encode()).hexdigest()[:12]
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
        (tmp / f"{LAUNCHER_CLASS}.java").write_text(LAUNCHER_SOURCE)
        res = subprocess.run([javac, "-nowarn", "--release", "8", "-cp", str(genmodel_jar), "-d", str(tmp),
                              str(tmp / f"{LAUNCHER_CLASS}.java")], capture_output=True, text=True)
        if res.returncode != 0:
            return None
        with contextlib.suppress(OSError):  # another process compiled it first
            tmp.rename(target)
        return target if (target / f"{LAUNCHER_CLASS}.class").exists() else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_all(commands: list[list[str]]) -> None:
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for c in commands]
    errors = []
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            errors.append(f"PredictCsv failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    if errors:
        raise RuntimeError("; ".join(errors))


def predict_chunks(genmodel_jar: Path, mojo: Path, inputs: list[Path], output_csv: Path, java: str = "java",
                   heap: str = "1g") -> None:
    """Score every input chunk at once; the outputs are joined in order into ``output_csv``.

    Each chunk is scored by H2O's own ``PredictCsv`` (one thread per chunk in one JVM when a
    ``javac`` can build the small launcher, else one JVM per chunk), so the joined file is
    byte-identical to a single ``PredictCsv`` over the whole input.
    """
    outputs = [p.with_name(f"{p.stem}.out.csv") for p in inputs]
    launcher = launcher_classpath(genmodel_jar, java) if len(inputs) > 1 else None
    if launcher is not None:
        pairs = [str(x) for pair in zip(inputs, outputs, strict=True) for x in pair]
        _run_all([[java, f"-Xmx{heap}", "-cp", f"{genmodel_jar}{os.pathsep}{launcher}", LAUNCHER_CLASS, str(mojo),
                   *pairs]])
    else:
        _run_all([genmodel_command(genmodel_jar, mojo, i, o, java, heap) for i, o in zip(inputs, outputs, strict=True)])
    with open(output_csv, "wb") as out:
        for i, path in enumerate(outputs):
            with open(path, "rb") as src:
                if i:
                    src.readline()  # the header, already written
                shutil.copyfileobj(src, out, 1 << 22)
            path.unlink()


def predict_csv(genmodel_jar: Path, mojo: Path, input_csv: Path, output_csv: Path, *, workers: int | None = None,
                java: str = "java") -> int:
    """Score a CSV with ``workers`` ``PredictCsv`` JVMs over row chunks; returns the JVMs used.

    Same output as one ``PredictCsv`` over the whole file. Inputs under
    ``MIN_ROWS_PER_JVM`` rows per JVM use fewer JVMs (estimated from the file size).
    """
    workers = workers or default_workers()
    input_csv, output_csv = Path(input_csv), Path(output_csv)
    with open(input_csv, "rb") as f:
        f.readline()
        sample = f.read(1 << 16)
    est_rows = input_csv.stat().st_size * max(sample.count(b"\n"), 1) // max(len(sample), 1)
    parts = max(1, min(workers, est_rows // MIN_ROWS_PER_JVM))
    if parts == 1:
        genmodel_predict(genmodel_jar, mojo, input_csv, output_csv, java)
        return 1
    work = Path(tempfile.mkdtemp(prefix="h2o-predict-", dir=output_csv.parent))
    try:
        chunks = split_csv(input_csv, parts, work)
        predict_chunks(genmodel_jar, mojo, chunks, output_csv, java)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return len(chunks)


def categorical_text(col: Any) -> Any:
    """A categorical column as the text H2O learned: whole numbers without ``.0``.

    A numeric-looking categorical with NAs arrives as float64 (``1545.0``) and would never
    match the model's level ``1545``; integer-valued floats are written as integers.
    """
    import pandas as pd

    if not pd.api.types.is_float_dtype(col):
        return col
    present = col.dropna()
    if not (present == present.round()).all():
        return col
    return col.astype("Int64").astype("string")


def write_chunks(df: Any, columns: list[str], workdir: Path, parts: int) -> list[Path]:
    """The scoring input as ``parts`` CSV files of consecutive rows (NA written as empty)."""
    n = len(df)
    parts = max(1, min(parts, n // MIN_ROWS_PER_JVM))
    paths = []
    for i in range(parts):
        path = workdir / f"in-{i:03d}.csv"
        df.iloc[n * i // parts: n * (i + 1) // parts][columns].to_csv(path, index=False, na_rep="")
        paths.append(path)
    return paths


def scoring_input(df: Any, features: list[dict[str, Any]], version: str) -> tuple[Any, dict[str, int]]:
    """The model's feature columns of ``df``, categoricals as the model's level text; unseen levels counted.

    :param features: the ``features`` of the model's metadata (name, type, domain).
    """
    unseen: dict[str, int] = {}
    out = {}
    for f in features:
        if f["name"] not in df.columns:
            raise InputDataError("scoring input", f["name"], f"is a feature of model {version} but is missing "
                                                             f"from the input (columns: {', '.join(df.columns)})",
                                 "add the column to the scoring data or retrain without it")
        col = df[f["name"]]
        if f["type"] == "enum":
            col = categorical_text(col)
            if f.get("domain"):
                new = ~col.isna() & ~col.astype(str).isin(set(f["domain"]))
                if int(new.sum()):
                    unseen[f["name"]] = int(new.sum())
        out[f["name"]] = col
    import pandas as pd

    return pd.DataFrame(out, index=df.index), unseen


def score_offline(cfg: PipelineConfig, s3s: S3Settings, start: date, end: date, *, run_id: str,
                  java: str = "java", workers: int | None = None) -> ScoreResult:
    """Score from the champion MOJO with no cluster at all (``workers`` JVMs over row chunks)."""
    import pandas as pd

    t0 = time.monotonic()
    start, end = intervals.scoring_days(start, end)
    client = s3s.client()
    champ = champion(client, cfg)
    staging, final = output_uris(cfg, start, run_id)
    df = _read_partition(client, cfg, start, end)
    ids = _check_ids(cfg, list(df.columns))
    feats, unseen = scoring_input(df, champ.metadata["features"], champ.version)
    work = Path(tempfile.mkdtemp(prefix="h2o-score-"))
    try:
        for name in ("model.zip", "h2o-genmodel.jar"):
            bucket, key = s3.split_uri(s3.join(champ.uri, name))
            client.download_file(bucket, key, str(work / name))
        chunks = write_chunks(feats, list(feats.columns), work, workers or default_workers())
        predict_chunks(work / "h2o-genmodel.jar", work / "model.zip", chunks, work / "output.csv", java)
        preds = pd.read_csv(work / "output.csv")
        out = pd.concat([df[ids].reset_index(drop=True), preds], axis=1)
        out.to_csv(work / "predictions.csv", index=False)
        s3.delete_prefix(client, staging)
        bucket, key = s3.split_uri(s3.join(staging, "part-00000.csv"))
        client.upload_file(str(work / "predictions.csv"), bucket, key)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sinks.commit_s3(client, staging, final)
    columns = [(c, "BIGINT" if str(t).startswith("int") else "DOUBLE" if str(t).startswith("float") else "STRING")
               for c, t in out.dtypes.items()]
    return ScoreResult("offline", champ.version, len(df), len(out), final, unseen, round(time.monotonic() - t0, 2),
                       columns)


@dataclass(frozen=True)
class LocalStage:
    path: Path
    columns: list[tuple[str, str]]


def stage_for_hive(result: ScoreResult, s3s: S3Settings, directory: Path) -> LocalStage:
    """Copy committed predictions into a local Parquet directory that HiveServer2 can read."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    client = s3s.client()
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    arrow = {"BIGINT": pa.int64(), "DOUBLE": pa.float64(), "STRING": pa.string()}
    types = {c: arrow[t] for c, t in result.columns}
    parts = [k for k in s3.list_keys(client, result.output_uri) if not k.endswith(sinks.SUCCESS)]
    for i, uri in enumerate(parts):
        body = s3.read_bytes(client, uri) or b""
        if not body.strip():
            continue
        table = pcsv.read_csv(io.BytesIO(body), convert_options=pcsv.ConvertOptions(column_types=types))
        pq.write_table(table, directory / f"part-{i:05d}.parquet")
    return LocalStage(directory, result.columns)
