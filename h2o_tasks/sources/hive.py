"""Hive data source through HiveServer2 (pyhive, or the apache-hive provider's hook).

The query's result is staged by HiveServer2 itself as Parquet files
(``INSERT OVERWRITE DIRECTORY … STORED AS PARQUET``) that the H2O cluster then imports in
parallel; results of at most ``source.hive.client_fetch_max_rows`` rows are fetched through
the client instead (no Spark write, no staging directory). Identifiers come validated
from the pipeline configuration and are quoted here; anything else is checked before it
is put into SQL.

Every function takes a DB-API connection: ``pyhive.hive.connect(..., auth="NOSASL")`` or
``HiveServer2Hook(...).get_conn()`` (connection extra ``{"auth_mechanism": "NOSASL"}`` for
a server without SASL).
"""

from __future__ import annotations

import calendar
import re
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from h2o_tasks.config import HiveSourceConfig
from h2o_tasks.errors import InputDataError, SourceNotFoundError
from h2o_tasks.hive_sql import identifier as _q
from h2o_tasks.hive_sql import literal as _literal
from h2o_tasks.intervals import Period

_QUERY = re.compile(r"FROM (?P<table>\S+) WHERE (?:CAST\()?`(?P<col>\w+)`(?: AS TIMESTAMP\))? >= (?:TIMESTAMP )?"
                    r"'(?P<lo>[^']*)' AND (?:CAST\()?`\w+`(?: AS TIMESTAMP\))? < (?:TIMESTAMP )?'(?P<hi>[^']*)'")


@dataclass(frozen=True)
class StagedResult:
    """Parquet part files HiveServer2 wrote for one query, and their total row count."""

    path: str
    files: tuple[str, ...]
    rows: int


def table_ref(cfg: HiveSourceConfig) -> str:
    return f"{_q(cfg.database, 'source.hive.database')}.{_q(cfg.table, 'source.hive.table')}"


def build_query(cfg: HiveSourceConfig, columns: list[str], start: date, end: date, hour: int | None = None) -> str:
    """``SELECT`` the columns of the rows dated in ``[start, end)`` (or in that hour of ``start``): partition
    values compared as ISO dates, or (``partition_format: datetime``) the column as an instant in UTC."""
    if not columns:
        raise InputDataError("features", columns, "is empty", "list at least one column")
    if end <= start:
        raise InputDataError("interval", f"[{start.isoformat()}, {end.isoformat()})", "is empty (end is not after start)",
                             "pass an end date after the start date")
    if cfg.partition_format == "date" and hour is not None:
        raise ValueError("hours are read from a date-time column only (config refuses the rest)")
    lo = datetime(start.year, start.month, start.day, hour or 0)
    hi = lo + timedelta(hours=1) if hour is not None else datetime(end.year, end.month, end.day)
    cols = ", ".join(_q(c, "features") for c in columns)
    return f"SELECT {cols} FROM {table_ref(cfg)} WHERE {_span(cfg, lo, hi)}"


def _span(cfg: HiveSourceConfig, lo: datetime, hi: datetime) -> str:
    """The rows dated in ``[lo, hi)``: ISO partition values, or the date-time column as an instant in UTC."""
    part = _q(cfg.partition_column, "source.hive.partition_column")
    if cfg.partition_format == "date":
        return f"{part} >= '{lo.date().isoformat()}' AND {part} < '{hi.date().isoformat()}'"
    # zone in the literals: the bounds are instants whatever the server's session time zone
    return (f"CAST({part} AS TIMESTAMP) >= TIMESTAMP '{lo:%Y-%m-%dT%H:%M:%S}Z' "
            f"AND CAST({part} AS TIMESTAMP) < TIMESTAMP '{hi:%Y-%m-%dT%H:%M:%S}Z'")


PERIOD_COLUMN = "h2o_period"  # the index of a row's period in a query over several periods


@dataclass(frozen=True)
class PeriodsQuery:
    """One scan over the whole span of several days or hours, each row tagged with the index of its
    period (``h2o_period``), so that a long interval costs one query, not one per period."""

    source: str  # FROM ... WHERE ...
    index: str  # the SQL expression of a row's period index
    periods: dict[int, Period]
    column: str  # the partition column the index is read from

    def select(self, columns: str) -> str:
        return f"SELECT {columns}, {self.index} AS {PERIOD_COLUMN} {self.source}"

    def count_sql(self) -> str:
        """Rows per period, counted by the server from the source table alone."""
        return (f"SELECT {PERIOD_COLUMN}, count(*) FROM (SELECT {self.index} AS {PERIOD_COLUMN} {self.source}) t "
                f"GROUP BY {PERIOD_COLUMN}")


def periods_query(cfg: HiveSourceConfig, periods: list[Period]) -> PeriodsQuery:
    """The span of ``periods`` (days, or hours of a date-time column) as one :class:`PeriodsQuery`."""
    if not periods:
        raise InputDataError("interval", periods, "has no period", "pass at least one day or hour")
    hourly = periods[0].hour is not None
    if cfg.partition_format == "date" and hourly:
        raise ValueError("hours are read from a date-time column only (config refuses the rest)")
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    starts = sorted(datetime(p.day.year, p.day.month, p.day.day, p.hour or 0) for p in periods)
    lo, hi = starts[0], starts[-1] + step
    part = _q(cfg.partition_column, "source.hive.partition_column")
    if cfg.partition_format == "date":
        index = f"datediff(CAST({part} AS DATE), DATE '{lo.date().isoformat()}')"
    else:  # seconds since the span's start, as an instant: no session time zone in it
        index = (f"CAST(floor((unix_timestamp(CAST({part} AS TIMESTAMP)) - {calendar.timegm(lo.timetuple())}) / "
                 f"{int(step.total_seconds())}) AS BIGINT)")
    by_index = {int((s - lo) / step): Period(s.date(), s.hour if hourly else None) for s in starts}
    return PeriodsQuery(f"FROM {table_ref(cfg)} WHERE {_span(cfg, lo, hi)}", index, by_index, cfg.partition_column)


def count_periods(conn: Any, query: PeriodsQuery) -> dict[Period, int]:
    """Rows of each period of ``query`` in the source table (0 for a period with none)."""
    cur = conn.cursor()
    try:
        cur.execute(query.count_sql())
        found = {None if i is None else int(i): int(n) for i, n in cur.fetchall()}
    finally:
        cur.close()
    if found.get(None):
        raise InputDataError("source.hive.partition_column", query.column,
                             f"has {found[None]} rows in the interval whose value is not a "
                             f"{'date' if 'datediff' in query.index else 'date-time'}",
                             "correct those partition values, or set source.hive.partition_format to match them")
    return {p: found.get(i, 0) for i, p in sorted(query.periods.items())}


def check_table(conn: Any, cfg: HiveSourceConfig, columns: list[str]) -> dict[str, str]:
    """Check that the table exists and has every column; return ``{column: hive type}``."""
    cur = conn.cursor()
    try:
        cur.execute(f"SHOW TABLES IN {_q(cfg.database, 'source.hive.database')} LIKE {_literal(cfg.table, 'source.hive.table')}")
        rows = cur.fetchall()
    except Exception as exc:  # the driver's own error class (pyhive, impyla, ...)
        if "not found" in str(exc).lower() or "SCHEMA_NOT_FOUND" in str(exc):
            raise SourceNotFoundError("source.hive.database", cfg.database, "does not exist",
                                      "create the database or fix source.hive.database") from None
        raise
    names = {row[1] if len(row) > 1 else row[0] for row in rows}
    if cfg.table not in names:
        raise SourceNotFoundError("source.hive.table", cfg.table, f"does not exist in database {cfg.database!r}",
                                  "create the table or fix source.hive.table / source.hive.database")
    cur.execute(f"DESCRIBE {table_ref(cfg)}")
    types: dict[str, str] = {}
    for row in cur.fetchall():
        name = (row[0] or "").strip()
        if not name or name.startswith("#"):
            if types:
                break  # the partition information repeats the partition columns
            continue
        types[name] = (row[1] or "").strip().lower()
    for col in [*columns, cfg.partition_column]:
        if col not in types:
            field = "source.hive.partition_column" if col == cfg.partition_column else "features"
            raise InputDataError(field, col, f"is not a column of {cfg.database}.{cfg.table} "
                                             f"(columns: {', '.join(types)})", "fix the column name in the pipeline")
    return types


def _describe(sql: str) -> tuple[str, str]:
    """``("flights", "dt in [2013-01-01, 2013-01-08)")`` for a query of :func:`build_query`."""
    m = _QUERY.search(sql)
    if not m:
        return "the query", sql.split(" WHERE ", 1)[-1]
    table = m["table"].replace("`", "").removeprefix("default.")
    return table, f"{m['col']} in [{m['lo']}, {m['hi']})"


def part_files(path: str | Path) -> tuple[str, ...]:
    """The data files of a directory written by Hive/Spark (no ``_SUCCESS``, ``.crc`` or hidden files)."""
    return tuple(sorted(str(p) for p in Path(path).iterdir()
                        if p.is_file() and not p.name.startswith(("_", ".")) and not p.name.endswith(".crc")))


def stage_query(conn: Any, sql: str, staging_dir: str) -> StagedResult:
    """Have HiveServer2 write the result of ``sql`` as Parquet files under ``staging_dir``.

    ``staging_dir`` must be unique to the run (it is replaced) and on a filesystem both the
    server and the H2O cluster can read; rows are counted from the Parquet footers.
    An empty result removes the directory and raises :class:`InputDataError`.
    """
    import pyarrow.parquet as pq

    path = Path(staging_dir).resolve()
    if any(part.startswith(".") for part in path.parts):
        raise InputDataError("staging_dir", str(path), "has a hidden ('.'-prefixed) directory in its path, and H2O refuses "
                             "to import such files (its default -file_deny_glob denies **/.**)",
                             "stage under a path without '.'-prefixed directories")
    cleanup(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    cur = conn.cursor()
    cur.execute(f"INSERT OVERWRITE DIRECTORY {_literal(str(path), 'staging_dir')} STORED AS PARQUET {sql}")
    files = part_files(path) if path.is_dir() else ()
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if rows == 0:
        cleanup(str(path))
        table, interval = _describe(sql)
        raise InputDataError("interval", interval, f"no rows in {table} for {interval}",
                             "check that the partitions of this interval are loaded, or choose another interval")
    return StagedResult(str(path), files, rows)


FETCH_BATCH_ROWS = 10_000  # rows per fetch round trip (the DB-API default of 1,000 costs 10x the round trips)
H2O_TYPES = {"string": "enum", "varchar": "enum", "char": "enum", "boolean": "enum", "tinyint": "int",
             "smallint": "int", "int": "int", "integer": "int", "bigint": "int", "float": "real", "double": "real",
             "decimal": "real", "date": "time", "timestamp": "time"}


@dataclass(frozen=True)
class FetchedResult:
    """A small query result fetched through the client, with the Hive type of each column."""

    table: Any  # pyarrow.Table
    hive_types: dict[str, str]


def h2o_types(hive_types: dict[str, str], columns: list[str]) -> dict[str, str]:
    """H2O column types for Hive column types (``varchar(10)`` -> ``enum``); unknown types are left to H2O."""
    out = {}
    for col in columns:
        base = hive_types.get(col, "").split("(", 1)[0].strip().lower()
        if base in H2O_TYPES:
            out[col] = H2O_TYPES[base]
    return out


def fetch_small(conn: Any, sql: str, max_rows: int) -> FetchedResult | None:
    """The result of ``sql`` when it has at most ``max_rows`` rows, else None (stage it instead).

    The rows come in batches of :data:`FETCH_BATCH_ROWS`; the fetch stops at the first row
    past the limit, so a big result costs at most ``max_rows`` fetched rows. (A ``LIMIT`` in
    the query would make Spark scan the partitions in several growing jobs.) An empty result
    is an error.
    """
    import pyarrow as pa

    if max_rows < 1:
        raise InputDataError("source.hive.client_fetch_max_rows", max_rows, "must be at least 1 for a client fetch",
                             "set a positive limit, or 0 to stage every result through the cluster")
    cur = conn.cursor()
    cur.arraysize = FETCH_BATCH_ROWS
    try:
        cur.execute(sql)
        rows: list[tuple[Any, ...]] = []
        while len(rows) <= max_rows:
            batch = cur.fetchmany(FETCH_BATCH_ROWS)
            if not batch:
                break
            rows.extend(batch)
        description = cur.description
    finally:
        cur.close()
    if len(rows) > max_rows:
        return None
    if not rows:
        table, interval = _describe(sql)
        raise InputDataError("interval", interval, f"no rows in {table} for {interval}",
                             "check that the partitions of this interval are loaded, or choose another interval")
    names = [d[0].split(".")[-1] for d in description]
    types = {name: str(d[1] or "").lower().removesuffix("_type") for name, d in zip(names, description, strict=True)}
    table = pa.table({name: pa.array(list(col)) for name, col in zip(names, zip(*rows, strict=True), strict=True)})
    return FetchedResult(table, types)


def cleanup(path: str) -> None:
    """Remove a staging directory (no error when it is already gone)."""
    shutil.rmtree(path, ignore_errors=True)
