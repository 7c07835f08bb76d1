"""Import an interval's data into the cluster, from S3 or Hive, as one named frame."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from h2o_tasks import intervals, upload
from h2o_tasks.config import PipelineConfig
from h2o_tasks.s3 import S3Settings


@dataclass(frozen=True)
class ImportResult:
    """What the import step pushes to XCom."""

    frame_id: str
    source: str
    start: str
    end: str
    rows: int
    columns: int
    input_bytes: int
    files: int
    seconds: float
    period: str = ""  # a scoring import: the day (YYYY-MM-DD) or hour (YYYY-MM-DDTHH) it holds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def columns_needed(cfg: PipelineConfig, purpose: str) -> list[str]:
    cols = list(cfg.scoring.id_columns) if purpose == "score" else []
    cols += [f for f in cfg.feature_names if f not in cols]
    if purpose == "train" and cfg.target.column not in cols:
        cols.append(cfg.target.column)
    return cols


def frame_id(cfg: PipelineConfig, purpose: str, start: date, end: date, hour: int | None = None) -> str:
    return f"{cfg.name.replace('-', '_')}_{purpose}_{start:%Y%m%d}_{end:%Y%m%d}" + (
        f"_{hour:02d}" if hour is not None else "")


def import_interval(h2o: Any, cfg: PipelineConfig, purpose: str, start: date, end: date, *,
                    s3: S3Settings | None = None, hive_conn: Callable[[], Any] | None = None,
                    staging_dir: str | Path | None = None, hour: int | None = None) -> tuple[Any, ImportResult]:
    """Import the data ``purpose`` (``train`` or ``score``) needs for the interval ``[start, end)``.

    S3: an input of at most ``client_fetch_max_bytes`` is downloaded and uploaded as one file;
    the cluster reads a bigger one itself. Hive: a result of at most
    ``client_fetch_max_rows`` rows is fetched and uploaded; a bigger one is staged as Parquet
    by HiveServer2 (``INSERT OVERWRITE DIRECTORY``), then imported by the cluster.
    """
    t0 = time.monotonic()
    lo, hi = intervals.window(cfg, purpose, start, end)
    dest = frame_id(cfg, purpose, lo, hi, hour)
    cols = columns_needed(cfg, purpose)
    if cfg.source.kind == "s3":
        from h2o_tasks.sources import s3 as s3_source

        client = (s3 or S3Settings()).client()
        resolved = s3_source.resolve(client, cfg.source.s3, lo, hi, all_required=purpose == "score", hour=hour)
        frame = s3_source.import_frame(h2o, resolved, cfg.source.s3.format, dest, client=client,
                                       client_fetch_max_bytes=cfg.source.s3.client_fetch_max_bytes, columns=cols)
        source, nbytes, nfiles = cfg.source.s3.uri, resolved.total_bytes, len(resolved.files)
    else:
        from h2o_tasks.sources import hive as hive_source

        if hive_conn is None or staging_dir is None:
            raise ValueError("a Hive source needs hive_conn and staging_dir")
        sql = hive_source.build_query(cfg.source.hive, cols, lo, hi, hour)
        max_rows = cfg.source.hive.client_fetch_max_rows
        conn = hive_conn()
        try:
            small, staged = None, None
            if max_rows:
                try:
                    small = hive_source.fetch_small(conn, sql, max_rows)
                except Exception:
                    hive_source.check_table(conn, cfg.source.hive, cols)  # a missing table or column: its clear error
                    raise
            if small is None:
                hive_source.check_table(conn, cfg.source.hive, cols)
                staged = hive_source.stage_query(conn, sql, str(staging_dir))
        finally:
            conn.close()
        if small is not None:
            frame = upload.upload_table(h2o, small.table, hive_source.h2o_types(small.hive_types, cols), dest)
            nbytes, nfiles = small.table.nbytes, 0
        else:
            nbytes, nfiles = sum(Path(f).stat().st_size for f in staged.files), len(staged.files)
            try:
                frame = h2o.import_file(path=[str(f) for f in staged.files], destination_frame=dest)
            finally:
                hive_source.cleanup(staged.path)
        source = f"hive:{cfg.source.hive.database}.{cfg.source.hive.table}"
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        from h2o_tasks.errors import InputDataError

        field = "target.column" if missing[0] == cfg.target.column else "features"
        available = ", ".join(frame.columns)
        h2o.remove(frame)
        raise InputDataError(field, missing[0], f"is not a column of {source} (columns: {available})",
                             "fix the pipeline's column names or the source")
    if list(frame.columns) != cols:  # an uploaded result already has exactly these columns, under ``dest``
        frame = frame[cols]
        h2o.assign(frame, dest)
    result = ImportResult(frame_id=dest, source=source, start=lo.isoformat(), end=hi.isoformat(), rows=frame.nrows,
                          columns=frame.ncols, input_bytes=nbytes, files=nfiles,
                          seconds=round(time.monotonic() - t0, 2),
                          period=intervals.Period(lo, hour).key if purpose == "score" else "")
    return frame, result


@dataclass(frozen=True)
class DaysImport:
    """The scoring import: one frame per day (or hour) of the interval, each committed as its own partition."""

    days: list[ImportResult]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        first, last = self.days[0], self.days[-1]
        return {"frames": [{"day": r.start, "period": r.period or r.start, "frame_id": r.frame_id, "rows": r.rows}
                           for r in self.days],
                "frame_id": first.frame_id, "source": first.source, "start": first.start, "end": last.end,
                "rows": sum(r.rows for r in self.days), "columns": first.columns,
                "input_bytes": sum(r.input_bytes for r in self.days), "files": sum(r.files for r in self.days),
                "seconds": self.seconds}


def import_days(h2o: Any, cfg: PipelineConfig, start: date, end: date, *, s3: S3Settings | None = None,
                hive_conn: Callable[[], Any] | None = None, staging_dir: str | Path | None = None) -> DaysImport:
    """Import each day of ``[start, end)`` as its own frame, for scoring; a failure removes the frames made before it."""
    return import_periods(h2o, cfg, intervals.periods("day", start, end), s3=s3, hive_conn=hive_conn,
                          staging_dir=staging_dir)


def import_periods(h2o: Any, cfg: PipelineConfig, periods: list[intervals.Period], *, s3: S3Settings | None = None,
                   hive_conn: Callable[[], Any] | None = None, staging_dir: str | Path | None = None) -> DaysImport:
    """Import each period (a day or an hour) as its own frame, for scoring; a failure removes the frames
    made before it."""
    t0 = time.monotonic()
    done: list[tuple[Any, ImportResult]] = []
    try:
        for p in periods:
            done.append(import_interval(h2o, cfg, "score", p.day, p.day + timedelta(days=1), s3=s3, hive_conn=hive_conn,
                                        staging_dir=Path(staging_dir) / p.key if staging_dir else None, hour=p.hour))
    except BaseException:
        for frame, _ in done:
            h2o.remove(frame)
        raise
    return DaysImport([r for _, r in done], round(time.monotonic() - t0, 2))


def import_training(h2o: Any, cfg: PipelineConfig, start: date, end: date, *, s3: S3Settings | None = None,
                    hive_conn: Callable[[], Any] | None = None, staging_dir: str | Path | None = None) -> dict[str, Any]:
    """The training window imported, its label derived and its contract checked, as the prepared frame
    ``frame_id`` (its name depends only on the pipeline and the window: importing again replaces it)."""
    from h2o_tasks import frames

    frame, result = import_interval(h2o, cfg, "train", start, end, s3=s3, hive_conn=hive_conn, staging_dir=staging_dir)
    out = result.to_dict()
    prepared = frames.prepare(frame, cfg, source=f"{result.source} [{result.start}, {result.end})")
    h2o.assign(prepared.frame, result.frame_id + "_prepared")
    out.update(frame_id=prepared.frame.frame_id, prepared=prepared.to_dict())
    return out
