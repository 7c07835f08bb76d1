"""Batch scoring with the champion model, in the cluster or offline from the MOJO.

Both engines check the input against the model's feature schema (a missing feature is an
error; unseen categorical levels are counted), write predictions to a staging prefix, and
commit them to ``{scoring.output_uri}/dt=YYYY-MM-DD/`` (see :mod:`h2o_tasks.sinks`).
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from h2o_tasks import intervals, mojo_csv, naming, registry, s3, sinks
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
                     run_id: str, loaded: dict[str, str] | None = None) -> ScoreResult:
    """Distributed predict: the cluster imports the champion MOJO from S3 and writes predictions to S3.

    :param loaded: registry versions whose model is already in this cluster, by model id (the
        training DAG's own model, when it became the champion): used as is, not re-imported.
    """
    from h2o_tasks.frames import check_scoring_input

    t0 = time.monotonic()
    champ = champion(client, cfg)
    staging, final = output_uris(cfg, start, run_id)
    ids = _check_ids(cfg, frame.columns)
    frame, report = check_scoring_input(frame, champ.metadata["features"], champ.version)
    model = _loaded_model(h2o, (loaded or {}).get(champ.version))
    owned = model is None
    if owned:
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
        if owned:
            h2o.remove(model)
    if rows_scored != frame.nrows:
        raise InputDataError("predictions", rows_scored, f"differ from the {frame.nrows} input rows",
                             "this is a bug: report it with the task log")
    sinks.commit_s3(client, staging, final)
    return ScoreResult("cluster", champ.version, frame.nrows, rows_scored, final, report.unseen_levels,
                       round(time.monotonic() - t0, 2), columns)


def _loaded_model(h2o: Any, model_id: str | None) -> Any:
    if not model_id:
        return None
    try:
        return h2o.get_model(model_id)
    except Exception:  # gone from the cluster: the MOJO is the champion's source of truth
        return None


def _read_partition(client: Any, cfg: PipelineConfig, start: date, end: date) -> Any:
    import pyarrow as pa

    from h2o_tasks.sources import s3 as s3_source

    if cfg.source.kind != "s3":
        raise ConfigError("scoring.engine", "offline", "reads S3 partitions only", "use engine: cluster for Hive")
    resolved = s3_source.resolve(client, cfg.source.s3, start, end, all_required=True)
    if cfg.source.s3.format == "parquet":
        tables = [t for _, t in s3_source.fetch_objects(client, resolved.files, s3_source.read_parquet)]
    else:
        import pyarrow.csv as pcsv

        tables = s3_source.fetch_objects(client, resolved.files, lambda _uri, body: pcsv.read_csv(pa.BufferReader(body)))
    return pa.concat_tables(tables, promote_options="default").to_pandas()


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
    """Score from the champion MOJO with no cluster at all (one JVM, ``workers`` threads: :mod:`h2o_tasks.mojo_csv`)."""
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
        feats.to_csv(work / "input.csv", index=False, na_rep="")
        mojo_csv.predict_csv(work / "h2o-genmodel.jar", work / "model.zip", work / "input.csv", work / "output.csv",
                             workers=workers, java=java)
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
