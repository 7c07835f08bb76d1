"""Batch scoring with the champion model, in the cluster or offline from the MOJO.

Both engines load the champion only when its ``model.zip`` matches the digest its version
recorded, check the input against the model's feature schema (a missing feature is an
error; unseen categorical levels are counted), and write each day of the interval as its
own partition ``{scoring.output_uri}/dt=YYYY-MM-DD/``: every attempt to its own location,
then committed by a switch (:mod:`h2o_tasks.predictions`).
"""

from __future__ import annotations

import csv
import functools
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from h2o_tasks import commit, commit_queue, intervals, mojo_csv, offline_stream, predictions, registry, s3, scratch, staging, syntax
from h2o_tasks.config import PipelineConfig
from h2o_tasks.errors import ConfigError, InputDataError, SourceNotFoundError
from h2o_tasks.s3 import S3Settings
from h2o_tasks.sources import hive as hive_source

HIVE_TYPES = {"int": "BIGINT", "real": "DOUBLE", "enum": "STRING", "string": "STRING", "time": "BIGINT"}
CLASSIFICATION = ("binary", "multiclass")


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
    partitions: list[dict[str, Any]] = field(default_factory=list)

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
    if pointer.model_sha256 and pointer.model_sha256 != meta.get("model_sha256"):
        from h2o_tasks.errors import RegistryError

        raise RegistryError("champion.json", pointer.model_sha256, f"names a model digest that version "
                            f"{pointer.version}'s metadata.json does not record ({meta.get('model_sha256')})",
                            "roll the champion back to an intact version (python -m h2o_tasks registry rollback)")
    return Champion(pointer.version, registry.version_uri(cfg.registry_uri, pointer.version), meta)


def fetch_model(client: Any, champ: Champion, directory: Path) -> Path:
    """Download the champion's ``model.zip`` into ``directory`` and check its digest before anything loads it."""
    path = Path(directory) / registry.MODEL
    bucket, key = s3.split_uri(s3.join(champ.uri, registry.MODEL))
    client.download_file(bucket, key, str(path))
    registry.verify_model(path, champ.metadata, champ.version)
    return path


def retention(cfg: PipelineConfig) -> predictions.Retention:
    """Replaced attempts stay ``scoring.retain_attempts_minutes``; an attempt never committed is
    abandoned after twice the longest a task may run (``cluster.ttl_minutes``), at least as long."""
    retain = timedelta(minutes=cfg.scoring.retain_attempts_minutes)
    return predictions.Retention(retain, max(retain, timedelta(minutes=2 * cfg.cluster.ttl_minutes)))


def partition_root(cfg: PipelineConfig, day: date | intervals.Period) -> str:
    if not cfg.scoring.output_uri:
        raise ConfigError("scoring.output_uri", "", "is required to score", "set scoring.output_uri: s3://BUCKET/PREFIX")
    return s3.join(cfg.scoring.output_uri, intervals.partition_path(day))


def prediction_types(metadata: dict[str, Any], columns: list[str]) -> list[tuple[str, str]]:
    """Hive types of the model's output columns, from the model (not from one day's values), the
    same for every engine: the first column, a classifier's predicted class, is text; probabilities
    and regression values are doubles."""
    classifier = (metadata.get("target") or {}).get("problem") in CLASSIFICATION
    return [(c, "STRING" if i == 0 and classifier else "DOUBLE") for i, c in enumerate(columns)]


def output_names(header: list[str], domain: list[str] | None, taken: Iterable[str] = ()) -> list[str]:
    """The scorer's output columns (``predict`` then one per class, in the label's order) as SQL
    identifiers, unique regardless of case (Hive's rule) and apart from ``taken`` (the id columns).

    A name that already is one is kept (``predict``, ``p0``, ``EWR``); another becomes ``p_`` and
    its class label with every other character as ``_`` (``9E`` → ``p_9E``, ``on-time`` →
    ``p_on_time``), numbered on a clash (``p_a_b_2``).
    """
    used = {t.lower() for t in taken}
    labels = domain if domain and len(domain) == len(header) - 1 else header[1:]
    out = []
    for i, name in enumerate(header):
        label = labels[i - 1] if i else name
        candidate = name if re.fullmatch(syntax.SQL_IDENTIFIER, name) else "p_" + re.sub(r"[^A-Za-z0-9_]", "_", label)
        base, n = candidate, 2
        while candidate.lower() in used:
            candidate, n = f"{base}_{n}", n + 1
        used.add(candidate.lower())
        out.append(candidate)
    return out


def _domain(metadata: dict[str, Any]) -> list[str] | None:
    return (metadata.get("target") or {}).get("domain")


def arrow_id_type(arrow_type: Any) -> str:
    """The Hive type of an id column read from the source with pyarrow, as H2O would type it."""
    import pyarrow as pa

    if pa.types.is_integer(arrow_type) or pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "BIGINT"  # H2O reads times as milliseconds since the epoch
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "DOUBLE"
    return "STRING"


def _check_ids(cfg: PipelineConfig, columns: list[str]) -> list[str]:
    for i, col in enumerate(cfg.scoring.id_columns):
        if col not in columns:
            raise InputDataError(f"scoring.id_columns[{i}]", col, f"is not a column of the scoring input "
                                                                  f"(columns: {', '.join(columns)})",
                                 "fix scoring.id_columns")
    return list(cfg.scoring.id_columns)


def _result(engine: str, version: str, cfg: PipelineConfig, committed: list[predictions.Committed], rows_in: int,
            unseen: dict[str, int], t0: float, columns: list[tuple[str, str]]) -> ScoreResult:
    return ScoreResult(engine, version, rows_in, sum(c.rows for c in committed), cfg.scoring.output_uri, unseen,
                       round(time.monotonic() - t0, 2), columns, [c.to_dict() for c in committed])


def score_in_cluster(h2o: Any, frames: list[tuple[date | intervals.Period, Any]], cfg: PipelineConfig, client: Any, *,
                     run_id: str,
                     loaded: dict[str, tuple[str, str]] | None = None,
                     hive: predictions.HiveTarget | None = None) -> ScoreResult:
    """Distributed predict of each day's frame; the cluster writes each day's attempt to S3, then it is committed.

    :param loaded: ``{version: (model_id, model_sha256)}`` of models already in this cluster (the
        training DAG's own model when it became the champion): used when the digest is the
        champion's, instead of uploading its MOJO again.
    """
    from h2o_tasks.frames import check_scoring_input

    t0 = time.monotonic()
    champ = champion(client, cfg)
    model_id, digest = (loaded or {}).get(champ.version, (None, None))
    model = _loaded_model(h2o, model_id) if digest and digest == champ.metadata.get("model_sha256") else None
    owned = model is None
    if owned:
        with scratch.directory("h2o-champion-") as tmp:
            model = h2o.upload_mojo(str(fetch_model(client, champ, Path(tmp))))
    unseen: dict[str, int] = {}
    columns: list[tuple[str, str]] = []
    rows_in = 0
    try:
        # one commit beside the next day's predict: a commit here reads its day's parts back from S3
        # (the cluster wrote them), so each queued one would hold a day of predictions in the worker
        with commit_queue.CommitQueue[predictions.Committed](1) as queue:
            for day, frame in frames:
                ids = _check_ids(cfg, frame.columns)
                frame, report = check_scoring_input(frame, champ.metadata["features"], champ.version)
                for k, v in report.unseen_levels.items():
                    unseen[k] = unseen.get(k, 0) + v
                preds = model.predict(frame)
                preds.set_names(output_names(preds.columns, _domain(champ.metadata), ids))
                out = frame[ids].cbind(preds) if ids else preds
                attempt = commit.new_attempt(partition_root(cfg, day), run_id)
                h2o.export_file(out, attempt.uri, force=True, parts=-1, write_checksum=False)
                columns = ([(c, HIVE_TYPES.get(out.types[c], "STRING")) for c in ids]
                           + prediction_types(champ.metadata, preds.columns))
                h2o.remove(out)
                h2o.remove(preds)
                rows_in += frame.nrows
                queue.submit(functools.partial(
                    predictions.publish, client, attempt, rows_in=frame.nrows, columns=columns, retention=retention(cfg),
                    model_version=champ.version, run_id=run_id, spec=intervals.partition_spec(day), hive=hive))
            committed = queue.results()
    finally:
        if owned:
            h2o.remove(model)
    return _result("cluster", champ.version, cfg, committed, rows_in, unseen, t0, columns)


def _loaded_model(h2o: Any, model_id: str | None) -> Any:
    if not model_id:
        return None
    try:
        return h2o.get_model(model_id)
    except Exception:  # gone from the cluster: the MOJO is the champion's source of truth
        return None


def _read_days(client: Any, cfg: PipelineConfig, start: date, end: date) -> dict[date, Any]:
    """Each day's partition files as one Arrow table, by day (every day of the interval must have data)."""
    return {p.day: t for p, t in _read_periods(client, cfg, intervals.periods("day", start, end)).items()}


def _period_files(client: Any, cfg: PipelineConfig, periods: list[intervals.Period]) -> list[tuple[intervals.Period, list[str]]]:
    """Each period's partition files, in order (every period must have data): days in one listing, hours
    one listing each."""
    from h2o_tasks.sources import s3 as s3_source

    if cfg.source.kind != "s3":
        raise ConfigError("scoring.engine", "offline", "reads S3 partitions only", "use engine: cluster for Hive")
    if all(p.hour is None for p in periods):
        found = [(s3_source.resolve(client, cfg.source.s3, periods[0].day, periods[-1].day + timedelta(days=1),
                                    all_required=True), None)]
    else:
        found = [(s3_source.resolve(client, cfg.source.s3, p.day, p.day + timedelta(days=1), all_required=True,
                                    hour=p.hour), p.hour) for p in periods]
    by_period: dict[intervals.Period, list[str]] = {}
    for resolved, hour in found:
        for uri, d in zip(resolved.files, resolved.file_days, strict=True):
            by_period.setdefault(intervals.Period(date.fromisoformat(d), hour), []).append(uri)
    return sorted(by_period.items())


def _read_periods(client: Any, cfg: PipelineConfig, periods: list[intervals.Period]) -> dict[intervals.Period, Any]:
    """Each period's partition files as one Arrow table (every period must have data), all in memory."""
    import pyarrow as pa

    from h2o_tasks.sources import s3 as s3_source

    listed = _period_files(client, cfg, periods)
    files = [f for _, uris in listed for f in uris]
    if cfg.source.s3.format == "parquet":
        tables = [t for _, t in s3_source.fetch_objects(client, files, s3_source.read_parquet)]
    else:
        import pyarrow.csv as pcsv

        tables = s3_source.fetch_objects(client, files, lambda _uri, body: pcsv.read_csv(pa.BufferReader(body)))
    out, i = {}, 0
    for period, uris in listed:
        out[period] = pa.concat_tables(tables[i:i + len(uris)], promote_options="default")
        i += len(uris)
    return out


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
                  hive: predictions.HiveTarget | None = None, java: str = "java",
                  workers: int | None = None, periods: list[intervals.Period] | None = None) -> ScoreResult:
    """Score from the champion MOJO with no cluster at all (one JVM, ``workers`` threads: :mod:`h2o_tasks.mojo_csv`),
    each day of the interval (or each of ``periods``) committed as its own partition."""
    t0 = time.monotonic()
    start, end = intervals.scoring_days(start, end)
    periods = periods or intervals.periods("day", start, end)
    client = s3s.client()
    champ = champion(client, cfg)
    unseen: dict[str, int] = {}
    columns: list[tuple[str, str]] = []
    rows_in = 0
    fmt = cfg.source.s3.format
    offline_stream.limit_malloc_arenas()  # before the download and commit threads take arenas of their own
    with scratch.directory("h2o-score-") as work, offline_stream.arrow_allocator():
        model = fetch_model(client, champ, work)
        # every period's rows streamed into one input, one scorer JVM for the interval (its start-up,
        # ~0.5 s, once and not per day), then its output streamed back and cut into periods by their rows
        local = offline_stream.download(client, _period_files(client, cfg, periods), work / "in")
        ids = _check_ids(cfg, offline_stream.column_names(local[0].paths[0], fmt))
        written = offline_stream.write_scorer_input(local, fmt, champ.metadata["features"], champ.version,
                                                    work / "input.csv")
        unseen = written.unseen
        mojo_csv.predict_csv(mojo_csv.genmodel_jar(), model, work / "input.csv", work / "output.csv",
                             workers=workers, java=java)
        (work / "input.csv").unlink()
        # every row scored, before any partition is committed: a record the scorer read across two
        # lines would shift every later prediction onto the wrong ids
        if (scored := offline_stream.count_rows(work / "output.csv")) != written.rows:
            raise InputDataError("predictions", scored, f"differ from the {written.rows} input rows",
                                 "this is a bug: report it with the task log")
        header, pred_types = _scored_header(champ.metadata, work / "output.csv")
        names = output_names(header, _domain(champ.metadata), ids)
        id_types = _id_types(local, fmt, ids)
        columns = [*id_types, *((name, t) for name, (_, t) in zip(names, pred_types, strict=True))]
        preds = offline_stream.PredictionLines(work / "output.csv")
        def publish(period: offline_stream.LocalPeriod, part: Path, landed: Any, rows: int) -> predictions.Committed:
            attempt = commit.new_attempt(partition_root(cfg, period.key), run_id)
            uploaded = predictions.upload_parts(client, attempt, [part])
            done = predictions.publish(client, attempt, rows_in=period.rows, columns=columns,
                                       retention=retention(cfg), model_version=champ.version, run_id=run_id,
                                       spec=intervals.partition_spec(period.key), uploaded=uploaded, table=landed,
                                       rows_written=rows, hive=hive)
            offline_stream.remove([*period.paths, part.parent])
            return done

        # periods are joined in order (one output stream) and committed in threads (commit_queue)
        with commit_queue.CommitQueue[predictions.Committed](commit_threads(hive)) as queue:
            for i, period in enumerate(local):
                part = work / "out" / f"{i:05d}" / "part-00000.csv"
                part.parent.mkdir(parents=True)
                # with a Hive table, the table the part was written from; the store's ETags then show those bytes landed
                rows, landed = offline_stream.join_period(period, fmt, id_types, preds, [c for c, _ in columns], part,
                                                          typed=predictions.arrow_schema(columns) if hive else None)
                if rows != period.rows:
                    raise InputDataError("predictions", rows, f"differ from the {period.rows} input rows of "
                                         f"{period.key}", "this is a bug: report it with the task log")
                # a queued commit holds the period's count; its table only where Hive is written from it
                queue.submit(publish, period, part, landed, rows)
                del landed
            if (extra := preds.left()):
                raise InputDataError("predictions", extra, f"more rows than the {written.rows} input rows",
                                     "this is a bug: report it with the task log")
        committed = queue.results()
        rows_in = written.rows
    return _result("offline", champ.version, cfg, committed, rows_in, unseen, t0, columns)


def commit_threads(hive: predictions.HiveTarget | None) -> int:
    """Partitions committed at once: one at a time with a Hive table (its DDL and partition switches go
    through one metastore), else :data:`h2o_tasks.commit_queue.COMMIT_THREADS`."""
    return 1 if hive is not None else commit_queue.COMMIT_THREADS


def _scored_header(metadata: dict[str, Any], scored: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The scorer's output header and the prediction columns' Hive types."""
    with scored.open(newline="") as f:
        header = next(csv.reader(f))
    return header, prediction_types(metadata, header)


def _id_types(local: list[offline_stream.LocalPeriod], fmt: str, ids: list[str]) -> list[tuple[str, str]]:
    """The id columns' Hive types, from the first file's schema (later files are cast to them)."""
    first = next(offline_stream.batches(local[0].paths[0], fmt, ids), None)
    if first is None:
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(local[0].paths[0]).schema_arrow if fmt == "parquet" else None
        return [(c, arrow_id_type(schema.field(c).type) if schema is not None else "STRING") for c in ids]
    return [(c, arrow_id_type(first.schema.field(c).type)) for c in ids]


UNSEEN_COLUMN = "h2o_unseen_features"  # the hive engine's staged column of unseen features (counted, then dropped)


def _column_map(metadata: dict[str, Any], ids: list[str]) -> list[str]:
    """The prediction columns of the champion (``predict``, then one per class), as its version recorded them."""
    recorded = (metadata.get("target") or {}).get("prediction_columns")
    if recorded:
        return [c["column"] for c in recorded]
    domain = _domain(metadata)
    classifier = (metadata.get("target") or {}).get("problem") in CLASSIFICATION
    return output_names(["predict", *(domain or [])] if classifier else ["predict"], domain, ids)


def hive_query(cfg: PipelineConfig, metadata: dict[str, Any], model_path: str,
               periods: hive_source.PeriodsQuery) -> str:
    """The one query that scores every period of ``periods`` in HiveServer2 with ``h2o_predict``: the id
    columns, the prediction columns, the features whose values the model never saw (for the task to
    count, then drop) and each row's period index."""
    from h2o_tasks import hive_udf
    from h2o_tasks.hive_sql import identifier, literal

    ids = list(cfg.scoring.id_columns)
    names = _column_map(metadata, ids)
    features = [f["name"] for f in metadata["features"]]
    outputs = [f"p.predict AS {identifier(names[0], 'predict')}"] + [
        f"p.probabilities[{i}] AS {identifier(n, 'prediction column')}" for i, n in enumerate(names[1:])]
    call = f"{hive_udf.FUNCTION}({literal(model_path, 'model')}, struct({', '.join(identifier(f, 'features') for f in features)}))"
    keep = [identifier(c, "scoring.id_columns") for c in ids]
    inner = periods.select(", ".join([f"{call} AS p", *keep]))
    return (f"SELECT {''.join(k + ', ' for k in keep)}{', '.join(outputs)}, p.unseen_features AS {UNSEEN_COLUMN}, "
            f"{hive_source.PERIOD_COLUMN} FROM ({inner}) t")


def _by_period(table: Any, query: hive_source.PeriodsQuery) -> dict[intervals.Period, Any]:
    """The staged rows split by their period index (one sort, then slices), the index dropped."""
    import numpy as np

    table = table.sort_by(hive_source.PERIOD_COLUMN)
    index = table.column(hive_source.PERIOD_COLUMN).to_numpy()
    table = table.drop_columns([hive_source.PERIOD_COLUMN])
    out = {}
    for i, period in sorted(query.periods.items()):
        lo, hi = np.searchsorted(index, i, "left"), np.searchsorted(index, i, "right")
        out[period] = table.slice(int(lo), int(hi - lo))
    return out


@dataclass
class StagedPeriods:
    """The staged predictions split by period into Arrow files on disk, so that one period at a time is
    held in memory, not the interval."""

    directory: Path
    files: dict[intervals.Period, list[Path]]

    def read(self, period: intervals.Period, expected: int) -> Any:
        import pyarrow as pa

        if not self.files[period]:
            raise InputDataError("predictions", str(self.directory), f"hold no rows of {period.key}, not the "
                                 f"{expected} input rows", "this is a bug: report it with the task log")
        return pa.concat_tables([pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in self.files[period]])

    def drop(self, period: intervals.Period) -> None:
        for path in self.files.pop(period):
            path.unlink()


def _split_staged(files: list[str], query: hive_source.PeriodsQuery, directory: Path,
                  unseen: dict[str, int]) -> StagedPeriods:
    """Read the staged Parquet files one batch at a time, count the unseen features, and write each
    period's rows of the batch to an Arrow file of that period under ``directory``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    split: dict[intervals.Period, list[Path]] = {p: [] for p in query.periods.values()}
    written = 0
    for name in files:
        for batch in pq.ParquetFile(name).iter_batches(batch_size=1 << 16):
            for features in batch.column(UNSEEN_COLUMN).to_pylist():
                for f in features or ():
                    unseen[f] = unseen.get(f, 0) + 1
            table = pa.Table.from_batches([batch]).drop_columns([UNSEEN_COLUMN])
            for period, rows in _by_period(table, query).items():
                if rows.num_rows:
                    path = directory / f"{written:08d}.arrow"
                    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
                        writer.write_table(rows)
                    split[period].append(path)
                    written += 1
    return StagedPeriods(directory, split)


def score_in_hive(cfg: PipelineConfig, s3s: S3Settings, periods: list[intervals.Period], *, run_id: str,
                  hive_conn: Any, stage_root: Path, hive: predictions.HiveTarget | None = None,
                  udf_jar: Path | None = None) -> ScoreResult:
    """Score every period inside HiveServer2 with the ``h2o_predict`` UDF and the champion's MOJO (digest
    checked): one query counts the source's rows per period, one query scores the whole span into a
    staging directory; each period is then committed like the other engines' predictions. No H2O cluster."""
    import pyarrow.csv as pcsv

    from h2o_tasks import hive_udf

    t0 = time.monotonic()
    client = s3s.client()
    champ = champion(client, cfg)
    ids = list(cfg.scoring.id_columns)
    query = hive_source.periods_query(cfg.source.hive, periods)
    work = Path(stage_root).resolve() / f"{staging.HIVE_SCORE_PREFIX}{run_id.replace(':', '_').replace('+', '_')}-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    unseen: dict[str, int] = {}
    columns: list[tuple[str, str]] = []
    rows_in = 0
    try:
        model = fetch_model(client, champ, work)  # the digest is checked before HiveServer2 reads it
        genmodel = work / "h2o-genmodel.jar"
        bucket, key = s3.split_uri(s3.join(champ.uri, "h2o-genmodel.jar"))
        client.download_file(bucket, key, str(genmodel))
        jar = udf_jar or hive_udf.build()
        conn = hive_conn()
        try:
            hive_source.check_table(conn, cfg.source.hive, [*dict.fromkeys([*ids, *(f["name"] for f in
                                                                                champ.metadata["features"])])])
            cur = conn.cursor()
            for sql in hive_udf.register_sql(jar, genmodel):
                cur.execute(sql)
            counts = hive_source.count_periods(conn, query)
            empty = [p for p, n in counts.items() if not n]
            if empty:
                raise SourceNotFoundError("source.hive.table", cfg.source.hive.table,
                                          f"has no rows for {', '.join(p.key for p in empty[:5])}"
                                          f"{f' (and {len(empty) - 5} more periods)' if len(empty) > 5 else ''}",
                                          "check that the partitions are loaded")
            staged = hive_source.stage_query(conn, hive_query(cfg, champ.metadata, str(model), query),
                                              str(work / "staged"))
        finally:
            conn.close()
        split = _split_staged(list(staged.files), query, work / "periods", unseen)

        def publish(period: intervals.Period, part: Path, columns: list[tuple[str, str]], rows: int,
                    table: Any) -> predictions.Committed:
            attempt = commit.new_attempt(partition_root(cfg, period), run_id)
            uploaded = predictions.upload_parts(client, attempt, [part])
            done = predictions.publish(client, attempt, rows_in=counts[period], columns=columns,
                                       retention=retention(cfg), model_version=champ.version, run_id=run_id,
                                       spec=intervals.partition_spec(period), uploaded=uploaded, table=table,
                                       rows_written=rows, hive=hive)
            shutil.rmtree(part.parent, ignore_errors=True)
            return done

        with commit_queue.CommitQueue[predictions.Committed](commit_threads(hive)) as queue:
            for i, (_, period) in enumerate(sorted(query.periods.items())):
                rows = split.read(period, counts[period])
                id_types = [(c, arrow_id_type(rows.schema.field(c).type)) for c in ids]
                columns = id_types + prediction_types(champ.metadata, rows.column_names[len(ids):])
                rows = rows.cast(predictions.arrow_schema(columns))
                if rows.num_rows != counts[period]:  # before this period's commit, and any later one
                    raise InputDataError("predictions", rows.num_rows,
                                         f"differ from the {counts[period]} source rows of {period.key}",
                                         "this is a bug: report it with the task log")
                part = work / "parts" / f"{i:05d}" / "part-00000.csv"
                part.parent.mkdir(parents=True)
                pcsv.write_csv(rows, part)
                rows_in += counts[period]
                # a queued commit holds the period's count; its rows only where Hive is written from them
                queue.submit(publish, period, part, columns, rows.num_rows, rows if hive is not None else None)
                del rows
                split.drop(period)
        committed = queue.results()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _result("hive", champ.version, cfg, committed, rows_in, unseen, t0, columns)
