"""Hive data source through HiveServer2 (pyhive, or the apache-hive provider's hook).

The query's result is staged by HiveServer2 itself as Parquet files
(``INSERT OVERWRITE DIRECTORY … STORED AS PARQUET``) that the H2O cluster then imports in
parallel; only small results are fetched through the client. Identifiers come validated
from the pipeline configuration and are quoted here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from h2o_tasks.config import HiveSourceConfig
from h2o_tasks.errors import InputDataError, SourceNotFoundError


@dataclass(frozen=True)
class StagedResult:
    path: str
    files: tuple[str, ...]
    rows: int


def _q(identifier: str) -> str:
    return f"`{identifier.replace('`', '')}`"


def table_ref(cfg: HiveSourceConfig) -> str:
    return f"{_q(cfg.database)}.{_q(cfg.table)}"


def build_query(cfg: HiveSourceConfig, columns: list[str], start: date, end: date) -> str:
    """SELECT the columns of the partitions in ``[start, end)``."""
    cols = ", ".join(_q(c) for c in columns)
    part = _q(cfg.partition_column)
    return (f"SELECT {cols} FROM {table_ref(cfg)} "
            f"WHERE {part} >= '{start.isoformat()}' AND {part} < '{end.isoformat()}'")


def check_table(conn: Any, cfg: HiveSourceConfig, columns: list[str]) -> dict[str, str]:
    """The table exists and has every column; returns ``{column: hive type}``."""
    cur = conn.cursor()
    cur.execute(f"SHOW TABLES IN {_q(cfg.database)} LIKE '{cfg.table}'")
    names = {row[1] if len(row) > 1 else row[0] for row in cur.fetchall()}
    if cfg.table not in names:
        raise SourceNotFoundError("source.hive.table", cfg.table, f"does not exist in database {cfg.database!r}",
                                  "create the table or fix source.hive.table / source.hive.database")
    cur.execute(f"DESCRIBE {table_ref(cfg)}")
    types: dict[str, str] = {}
    for row in cur.fetchall():
        name = (row[0] or "").strip()
        if not name or name.startswith("#"):
            if types:
                break  # partition information follows
            continue
        types[name] = (row[1] or "").strip()
    for col in [*columns, cfg.partition_column]:
        if col not in types:
            field = "source.hive.partition_column" if col == cfg.partition_column else "features"
            raise InputDataError(field, col, f"is not a column of {cfg.database}.{cfg.table} "
                                             f"(columns: {', '.join(types)})", "fix the column name in the pipeline")
    return types


def stage_query(conn: Any, sql: str, staging_dir: str) -> StagedResult:
    """Have HiveServer2 write the result as Parquet files under ``staging_dir`` (replaced)."""
    import pyarrow.parquet as pq

    path = Path(staging_dir)
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cur = conn.cursor()
    cur.execute(f"INSERT OVERWRITE DIRECTORY '{path}' STORED AS PARQUET {sql}")
    files = tuple(sorted(str(p) for p in path.glob("part-*") if p.is_file() and not p.name.endswith(".crc")))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if rows == 0:
        cleanup(str(path))
        where = sql.split(" WHERE ", 1)[-1]
        raise InputDataError("interval", where, "selects no rows (an empty or missing partition)",
                             "check that the partitions of this interval are loaded")
    return StagedResult(str(path), files, rows)


def fetch_small(conn: Any, sql: str, max_rows: int) -> Any:
    """A small result, fetched through the client into a pandas DataFrame."""
    import pandas as pd

    cur = conn.cursor()
    cur.execute(f"{sql} LIMIT {max_rows + 1}")
    rows = cur.fetchall()
    if len(rows) > max_rows:
        raise InputDataError("source.hive.client_fetch_max_rows", max_rows, "is smaller than the query's result",
                             "stage the result through the cluster (set client_fetch_max_rows: 0)")
    return pd.DataFrame(rows, columns=[d[0].split(".")[-1] for d in cur.description])


def write_partition(conn: Any, table: str, partition_column: str, value: str, parquet_dir: str,
                    columns: list[tuple[str, str]]) -> int:
    """Replace one partition of ``table`` with the Parquet files in ``parquet_dir``.

    ``INSERT OVERWRITE … PARTITION`` replaces the partition as one operation: a re-run of an
    interval replaces its rows, never duplicates them. Returns the rows in the partition.
    """
    cur = conn.cursor()
    cols = ", ".join(f"{_q(c)} {t}" for c, t in columns)
    cur.execute(f"CREATE TABLE IF NOT EXISTS {_q(table)} ({cols}) PARTITIONED BY ({_q(partition_column)} STRING) "
                "STORED AS PARQUET")
    view = f"staged_{abs(hash((table, value, parquet_dir))) % 10**8}"
    cur.execute(f"CREATE OR REPLACE TEMPORARY VIEW {view} USING parquet OPTIONS (path '{parquet_dir}')")
    select = ", ".join(f"CAST({_q(c)} AS {t})" for c, t in columns)
    cur.execute(f"INSERT OVERWRITE TABLE {_q(table)} PARTITION ({_q(partition_column)}='{value}') "
                f"SELECT {select} FROM {view}")
    cur.execute(f"DROP VIEW IF EXISTS {view}")
    cur.execute(f"SELECT count(*) FROM {_q(table)} WHERE {_q(partition_column)} = '{value}'")
    return int(cur.fetchone()[0])


def cleanup(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
