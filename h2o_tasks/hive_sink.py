"""Predictions in a Hive table: one directory per commit attempt, published by a partition location switch.

The table is an external, partitioned Parquet table. Each attempt writes its Parquet files
into a directory of its own, ``{location}/dt=YYYY-MM-DD/_attempts/<attempt>/``; readers move to
it when ``ALTER TABLE … PARTITION … SET LOCATION`` changes the partition's location in the
metastore, one operation. Parquet columns are read by name, and the table's columns are
checked before any write: new columns (a new id column, new class columns) are added to the
table, a changed type or a dropped column is an error that names both schemas.

Every function takes a DB-API connection to HiveServer2 (pyhive, or the apache-hive
provider's ``HiveServer2Hook().get_conn()``). Files are written with pyarrow's file systems,
so the location may be a local path both the task and HiveServer2 see, or an ``hdfs://`` or
``s3://`` URI HiveServer2 reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from h2o_tasks.errors import InputDataError
from h2o_tasks.hive_sql import column_type
from h2o_tasks.hive_sql import identifier as _q
from h2o_tasks.hive_sql import literal as _literal


@dataclass(frozen=True)
class TableChange:
    """What :func:`ensure_table` did: created the table, added columns, or nothing."""

    created: bool
    added: list[tuple[str, str]]


def _schema_text(columns: list[tuple[str, str]]) -> str:
    return "(" + ", ".join(f"{c} {t}" for c, t in columns) + ")"


def table_columns(conn: Any, table: str, partition_column: str | Sequence[str] = ()) -> list[tuple[str, str]] | None:
    """The table's data columns as ``(name, TYPE)`` (partition columns excluded), or None if it does not exist."""
    cur = conn.cursor()
    cur.execute(f"SHOW TABLES LIKE {_literal(table, 'scoring.hive_table')}")
    if table.lower() not in {(row[1] if len(row) > 1 else row[0]).lower() for row in cur.fetchall()}:
        return None
    cur.execute(f"DESCRIBE {_q(table, 'scoring.hive_table')}")
    columns: list[tuple[str, str]] = []
    partition_columns: set[str] = set()
    in_partition_info = False
    for row in cur.fetchall():
        name = (row[0] or "").strip()
        if name.startswith("#"):  # "# Partition Information", then "# col_name", then the partition columns
            in_partition_info = in_partition_info or "partition" in name.lower()
            continue
        if not name:
            continue
        if in_partition_info:
            partition_columns.add(name.lower())
        else:
            columns.append((name, (row[1] or "").strip().upper()))
    # a server that lists partition columns only with the others
    partition_columns.update(c.lower() for c in _names(partition_column))
    return [(c, t) for c, t in columns if c.lower() not in partition_columns]


def _names(columns: str | Sequence[str]) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns)


def ensure_table(conn: Any, table: str, columns: list[tuple[str, str]], partition_column: str | Sequence[str],
                 location: str) -> TableChange:
    """Create the table, or check its columns against ``columns`` and add the new ones.

    :raises InputDataError: a column changed type or is missing from the new predictions;
        the message names both schemas.
    """
    for name, hive_type in columns:
        _q(name, "columns")
        column_type(hive_type)
    t = _q(table, "scoring.hive_table")
    existing = table_columns(conn, table, partition_column)
    cur = conn.cursor()
    if existing is None:
        cols = ", ".join(f"{_q(c, 'columns')} {hive_type}" for c, hive_type in columns)
        parts = ", ".join(f"{_q(c, 'partition_column')} STRING" for c in _names(partition_column))
        cur.execute(f"CREATE EXTERNAL TABLE IF NOT EXISTS {t} ({cols}) PARTITIONED BY ({parts}) STORED AS PARQUET "
                    f"LOCATION {_literal(location, 'scoring.hive_location')}")
        existing = table_columns(conn, table, partition_column) or []  # a concurrent creator may have won with other columns
        if [(c.lower(), ty) for c, ty in existing] == [(c.lower(), ty.upper()) for c, ty in columns]:
            return TableChange(True, [])
    have = {c.lower(): ty for c, ty in existing}
    want = {c.lower(): ty.upper() for c, ty in columns}
    changed = [c for c in want if c in have and have[c] != want[c]]
    dropped = [c for c, _ in existing if c.lower() not in want]
    if changed or dropped:
        what = (f"column(s) {', '.join(changed)} change type" if changed else "") + (
            "; " if changed and dropped else "") + (f"column(s) {', '.join(dropped)} are missing" if dropped else "")
        raise InputDataError("scoring.hive_table", table, f"has the schema {_schema_text(existing)}, the new predictions "
                             f"{_schema_text([(c, ty.upper()) for c, ty in columns])}: {what}",
                             "score into a new table (scoring.hive_table), or migrate this one by hand")
    added = [(c, ty.upper()) for c, ty in columns if c.lower() not in have]
    if added:
        new = ", ".join(f"{_q(c, 'columns')} {ty}" for c, ty in added)
        cur.execute(f"ALTER TABLE {t} ADD COLUMNS ({new})")
    return TableChange(False, added)


def write_files(table: Any, location: str, part_rows: int = 1 << 20) -> int:
    """Write an Arrow table as Parquet files under ``location`` (a directory of this attempt); rows written.

    The rows are then counted again from the files' footers (:func:`count_rows`).
    """
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, path = pafs.FileSystem.from_uri(_uri(location))
    fs.create_dir(path, recursive=True)
    for i, start in enumerate(range(0, max(table.num_rows, 1), part_rows)):
        pq.write_table(table.slice(start, part_rows), f"{path}/part-{i:05d}.parquet", filesystem=fs)
    return table.num_rows


def count_rows(location: str) -> int:
    """Rows of every Parquet file under ``location``, from their footers (where they landed)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, path = pafs.FileSystem.from_uri(_uri(location))
    rows = 0
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        name = info.base_name
        if info.type == pafs.FileType.File and not name.startswith(("_", ".")) and name.endswith(".parquet"):
            with fs.open_input_file(info.path) as f:
                rows += pq.ParquetFile(f).metadata.num_rows
    return rows


def remove(location: str) -> None:
    """Delete an attempt's directory (no error when it is gone)."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(_uri(location))
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def attempt_dirs(location: str) -> dict[str, datetime]:
    """The attempt directories under ``location`` (a partition's ``_attempts``) with their newest file's time."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(_uri(location))
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return {}
    out: dict[str, datetime] = {}
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        name = info.path[len(path):].lstrip("/").split("/", 1)[0]
        when = info.mtime.astimezone(UTC) if info.mtime else datetime.now(UTC)
        out[name] = max(out.get(name, when), when)
    return out


def set_location(conn: Any, table: str, spec: dict[str, str], location: str) -> None:
    """Point the partition at ``location`` (adding the partition if it is new): one metastore operation each."""
    t = _q(table, "scoring.hive_table")
    part = ", ".join(f"{_q(k, 'partition_column')}={_literal(v, k)}" for k, v in spec.items())
    loc = _literal(location, "scoring.hive_location")
    cur = conn.cursor()
    cur.execute(f"ALTER TABLE {t} ADD IF NOT EXISTS PARTITION ({part}) LOCATION {loc}")
    cur.execute(f"ALTER TABLE {t} PARTITION ({part}) SET LOCATION {loc}")


def partition_rows(conn: Any, table: str, spec: dict[str, str]) -> int:
    """What a Hive reader sees: the partition's row count by a query."""
    where = " AND ".join(f"{_q(k, 'partition_column')} = {_literal(v, k)}" for k, v in spec.items())
    cur = conn.cursor()
    cur.execute(f"SELECT count(*) FROM {_q(table, 'scoring.hive_table')} WHERE {where}")
    return int(cur.fetchone()[0])


def _uri(location: str) -> str:
    return f"file://{location}" if location.startswith("/") else location
