"""Committing one partition's predictions: counted where they landed, then switched in S3 and in Hive.

The sequence for one attempt (each step is a named test hook, :mod:`h2o_tasks.testhooks`):

1. the scoring engine has written the attempt's part files under ``_attempts/<attempt>/``
   (``commit:after-staging``);
2. the partition is listed once (the attempt's parts, an earlier release's part files, whether
   a manifest exists) and the parts counted where they landed against the input rows; with a Hive
   table, the same rows are written as Parquet into the attempt's own directory and counted
   from their footers (``commit:after-write``);
3. (``commit:before-switch``) the partition's ``_manifest.json`` is swapped to the attempt;
   one listing of the partition's attempts then shows the attempt still whole (else the
   partition is switched back) and each attempt's age (``commit:after-switch``); the Hive
   partition's location is set to the attempt the manifest names, checked again until the two
   agree;
4. the partition's ``_SUCCESS`` (``commit:before-cleanup``), then attempts retired longer
   than ``retain`` ago, and attempts never committed older than ``orphan_age``, are removed.

A process killed anywhere leaves the previous committed attempt readable in S3 and Hive;
the next commit of the partition goes through and brings Hive to S3's attempt.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from h2o_tasks import commit, hive_sink, s3, testhooks
from h2o_tasks.errors import CommitError, InputDataError

ARROW_TYPES = {"BIGINT": "int64", "DOUBLE": "float64", "STRING": "string"}
SYNC_ROUNDS = 5


@dataclass(frozen=True)
class HiveTarget:
    """Where a pipeline's predictions go in Hive: the table, its root location, and how to connect."""

    table: str
    location: str
    connect: Callable[[], Any]
    partition_columns: tuple[str, ...] = ("dt",)  # ("dt", "hr") for hourly predictions

    def attempts(self, partition: str) -> str:
        return f"{self.location.rstrip('/')}/{partition}/{commit.ATTEMPTS}"


@dataclass(frozen=True)
class Committed:
    """One partition's commit, as the task reports it."""

    partition: str
    attempt: str
    output_uri: str
    manifest_uri: str
    rows: int
    files: int
    hive_table: str | None = None
    hive_location: str | None = None
    hive_rows: int | None = None
    removed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Retention:
    """How long replaced attempts stay (readers still on them), and when an uncommitted one is abandoned."""

    retain: timedelta
    orphan_age: timedelta


def arrow_schema(columns: list[tuple[str, str]]) -> Any:
    import pyarrow as pa

    return pa.schema([(c, pa.type_for_alias(ARROW_TYPES.get(t, "string"))) for c, t in columns])


def read_parts(client: Any, files: list[dict[str, Any]], columns: list[tuple[str, str]]) -> Any:
    """The CSV part files of an attempt as one Arrow table typed as ``columns`` (each part has a header)."""
    import pyarrow as pa

    tables = []
    for f in files:
        body = s3.read_bytes(client, f["uri"]) or b""
        if body.strip():
            tables.append(read_part(io.BytesIO(body), columns))
    return pa.concat_tables(tables) if tables else arrow_schema(columns).empty_table()


def read_part(part: Any, columns: list[tuple[str, str]]) -> Any:
    """One CSV part (a path or a file object; a header, then rows) as an Arrow table typed as ``columns``."""
    import pyarrow.csv as pcsv

    schema = arrow_schema(columns)
    return pcsv.read_csv(part if not isinstance(part, Path) else str(part),
                         parse_options=pcsv.ParseOptions(newlines_in_values=True),  # a quoted id may hold a line end
                         convert_options=pcsv.ConvertOptions(column_types=schema, include_columns=schema.names))


def upload_parts(client: Any, attempt: commit.Attempt, paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Upload local part files into the attempt; ``{uri: {size[, etag]}}`` for :func:`publish` to check the
    listing against. The attempt's prefix is this call's own (its id is random), so nothing else writes
    these keys and no condition is needed: up to :data:`h2o_tasks.s3.PART_BYTES` one PutObject (its ETag
    then checked too), above it a managed multipart upload in threads."""
    out = {}
    for path in paths:
        uri = s3.join(attempt.uri, path.name)
        bucket, key = s3.split_uri(uri)
        size = path.stat().st_size
        if size <= s3.PART_BYTES:  # a transfer manager (its own thread pool) per small part costs more than the PUT
            with path.open("rb") as body:
                etag = client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/csv")["ETag"]
            out[uri] = {"size": size, "etag": etag}
        else:
            client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": "text/csv"})
            out[uri] = {"size": size}
    return out


def _same_files(files: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> str | None:
    """The first object that differs between a listing and what was written (key, size, and the ETag
    where one is expected), or None."""
    got = {f["uri"]: f for f in files}
    bad = sorted(set(got) ^ set(expected)) or sorted(
        u for u, f in got.items() if f["size"] != expected[u]["size"]
        or ("etag" in expected[u] and f["etag"] != expected[u]["etag"]))
    return bad[0] if bad else None


def publish(client: Any, attempt: commit.Attempt, *, rows_in: int, columns: list[tuple[str, str]],
            retention: Retention, model_version: str, run_id: str, spec: dict[str, str],
            table: Any = None, uploaded: dict[str, dict[str, Any]] | None = None, rows_written: int | None = None,
            hive: HiveTarget | None = None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Committed:
    """Commit the attempt's parts as the partition's predictions (the sequence in the module docstring).

    :param table: the predictions as an Arrow table when the task wrote them itself (with
        ``uploaded``: what it uploaded, checked against the listing); otherwise the parts are
        read back from S3 and counted there.
    :param rows_written: instead of ``table`` when there is no Hive table to write: the rows the task
        wrote into the parts it uploaded (so a queue of commits holds counts, not tables).
    :raises InputDataError: rows landed differ from ``rows_in`` (nothing is switched).
    """
    testhooks.checkpoint("commit:after-staging")
    partition = "/".join(f"{k}={v}" for k, v in spec.items())  # dt=YYYY-MM-DD[/hr=HH]
    # one listing gives the attempt's files, an earlier release's files and whether a manifest exists
    before = commit.list_attempts(client, attempt.root)
    files = before.landed(attempt)
    if uploaded is not None and (bad := _same_files(files, uploaded)):
        raise CommitError("predictions", attempt.uri, f"differ after the write from what was uploaded ({bad})",
                          "retry the task; if it repeats, check what else writes under the output prefix")
    if table is None and (rows_written is None or uploaded is None or hive is not None):
        table = read_parts(client, files, columns)
    rows = table.num_rows if table is not None else rows_written
    if rows != rows_in:
        raise InputDataError("predictions", attempt.uri, f"hold {rows} rows where they landed, not the "
                             f"{rows_in} input rows", "this is a bug: report it with the task log")
    hive_location = hive_rows = None
    if hive is not None:
        hive_location = f"{hive.attempts(partition)}/{attempt.id}"
        conn = hive.connect()
        try:
            hive_sink.ensure_table(conn, hive.table, columns, hive.partition_columns, hive.location)
        finally:
            conn.close()
        hive_sink.write_files(table.cast(arrow_schema(columns)), hive_location)
        hive_rows = hive_sink.count_rows(hive_location)
        if hive_rows != rows_in:
            raise CommitError("predictions", hive_location, f"hold {hive_rows} rows where they landed, not the "
                              f"{rows_in} input rows", "check the Hive location's file system and retry")
    testhooks.checkpoint("commit:after-write")
    testhooks.checkpoint("commit:before-switch")

    def make(current: commit.Manifest | None) -> commit.Manifest:
        at = now()
        retired = commit.retire(current, at, retention.retain)
        if current is None and before.legacy:  # an earlier release's files: retired like an attempt, removed
            # after the grace
            retired.append(commit.Retired(commit.LEGACY, attempt.root, None, at.isoformat()))
        return commit.Manifest(partition, attempt.id, attempt.uri, files, rows, at.isoformat(),
                               (current.generation if current else 0) + 1, model_version, run_id,
                               hive.table if hive else None, hive_location, retired)

    manifest, replaced = commit.switch(client, attempt, make, absent=not before.manifest)
    listing = commit.list_attempts(client, attempt.root)
    _still_whole(client, attempt, files, replaced, listing.files.get(attempt.id, []))
    testhooks.checkpoint("commit:after-switch")
    if hive is not None:
        sync_hive(client, attempt.root, hive, spec)
    commit.ensure_marker(client, attempt.root, listing.marker)
    testhooks.checkpoint("commit:before-cleanup")
    removed = cleanup(client, attempt.root, hive, retention, now(), manifest, listing.ages)
    return Committed(partition, attempt.id, attempt.root, s3.join(attempt.root, commit.MANIFEST), manifest.rows,
                     len(files), hive.table if hive else None, hive_location, hive_rows, removed)


def _still_whole(client: Any, attempt: commit.Attempt, files: list[dict[str, Any]],
                 replaced: commit.Manifest | None, now_listed: list[dict[str, Any]]) -> None:
    """After the switch, the attempt must still hold what was counted; if another writer's clean-up
    removed it meanwhile (a writer stalled past the orphan age), switch back to what it replaced."""
    bad = _same_files(now_listed, {f["uri"]: f for f in files})
    if bad is None:
        return
    if replaced is not None:
        def back(current: commit.Manifest | None) -> commit.Manifest:
            if current is None or current.attempt != attempt.id:
                raise CommitError("predictions", attempt.uri, "lost files after its switch and was replaced since",
                                  "retry the task")
            return dataclasses.replace(replaced, generation=current.generation + 1,
                                       retired=[*replaced.retired, commit.Retired(
                                           attempt.id, attempt.uri, current.hive_location,
                                           datetime.now(UTC).isoformat())])
        commit.switch(client, attempt, back)
    raise CommitError("predictions", attempt.uri, f"lost {bad} after its switch (removed as abandoned by another "
                      "writer's clean-up); the partition was switched back to the attempt it replaced",
                      "retry the task")


def sync_hive(client: Any, root: str, hive: HiveTarget, spec: dict[str, str]) -> str | None:
    """Set the Hive partition to the attempt the S3 manifest names, until both agree; that location.

    Two committers may switch S3 in one order and Hive in the other; each one, after its own
    switch, re-reads the manifest after setting Hive, so the last one to touch Hive leaves
    it on the manifest's attempt.
    """
    conn = hive.connect()
    try:
        for _ in range(SYNC_ROUNDS):
            manifest, _ = commit.read_manifest(client, root)
            if manifest is None or not manifest.hive_location:
                return None
            hive_sink.set_location(conn, hive.table, spec, manifest.hive_location)
            again, _ = commit.read_manifest(client, root)
            if again is not None and again.attempt == manifest.attempt:
                return manifest.hive_location
    finally:
        conn.close()
    raise CommitError("scoring.hive_table", hive.table, f"kept changing while this task set its partition {spec} "
                      f"({SYNC_ROUNDS} rounds)", "retry the task once the other writers of this partition are done")


def cleanup(client: Any, root: str, hive: HiveTarget | None, retention: Retention, now: datetime,
            manifest: commit.Manifest | None = None, ages: dict[str, datetime] | None = None) -> list[str]:
    """Remove the partition's attempts that :func:`h2o_tasks.commit.removable` gives up (S3 and Hive).

    :param manifest: the one this writer just switched to (read when not given). A newer one
        only protects more: an attempt committed since is young, so never an orphan yet.
    :param ages: the attempts' ages, listed after that switch (listed when not given).
    """
    if manifest is None:
        manifest, _ = commit.read_manifest(client, root)
    if manifest is None:
        return []
    partition = root.rstrip("/").rsplit("/", 1)[-1]
    ages = dict(ages) if ages is not None else commit.attempt_ages(client, root)
    hive_dirs = hive_sink.attempt_dirs(hive.attempts(partition)) if hive is not None else {}
    for attempt, mtime in hive_dirs.items():
        ages[attempt] = max(ages.get(attempt, mtime), mtime)
    retired = {r.attempt: r for r in manifest.retired}
    removed = commit.removable(manifest, ages, now, retention.retain, retention.orphan_age)
    for attempt in removed:
        if attempt == commit.LEGACY:
            for f in commit.legacy_files(client, root):
                bucket, key = s3.split_uri(f["uri"])
                client.delete_object(Bucket=bucket, Key=key)
            continue
        s3.delete_prefix(client, commit.Attempt(root, attempt).uri)
        hive_location = retired[attempt].hive_location if attempt in retired else None
        for location in {hive_location, f"{hive.attempts(partition)}/{attempt}" if hive else None} - {None}:
            hive_sink.remove(location)
    return removed
