"""S3 data source: date partitions under ``uri``, laid out as ``source.s3.partitions`` says
(``dt=YYYY-MM-DD/`` by default; ``year=/month=/day=``, ``date=``, an hour level...).

An input of at most ``source.s3.client_fetch_max_bytes`` is downloaded by the task (threads)
and uploaded to the cluster as one file: H2O's import and parse cost ~10 ms per object, which
for 365 small daily files is several times the download itself. A bigger input is read by the
H2O nodes in parallel through H2O's own S3 client (endpoint from the JVM properties,
credentials handed over at run time), its keys taken from one listing (:func:`lazy_import`).
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

from h2o_tasks import chunking, s3, scratch, upload
from h2o_tasks.config import S3SourceConfig
from h2o_tasks.errors import InputDataError, SourceNotFoundError

_SKIP = ("_SUCCESS", ".crc", "_committed", "_started")
FETCH_THREADS = 8
LIST_PAGE = 1000  # keys per ListObjectsV2 page
UPLOAD_ROW_GROUP = 1 << 16  # row groups of the uploaded Parquet file: H2O parses them in parallel
T = TypeVar("T")


@dataclass(frozen=True)
class ResolvedInput:
    """The objects an interval maps to."""

    files: tuple[str, ...]
    total_bytes: int
    days_found: tuple[str, ...]
    days_missing: tuple[str, ...] = field(default=())
    file_days: tuple[str, ...] = field(default=())  # the day (YYYY-MM-DD) of each file

    def to_dict(self) -> dict[str, Any]:
        return {"files": len(self.files), "bytes": self.total_bytes, "days_found": len(self.days_found),
                "days_missing": list(self.days_missing)}


def days(start: date, end: date) -> list[date]:
    """Every day in ``[start, end)``."""
    return [start + timedelta(days=i) for i in range((end - start).days)]


DEFAULT_PARTITIONS = "dt={date}"


def day_prefix(template: str, day: date) -> str:
    """The directory of one day's data under the source's prefix: the template without its hour level."""
    levels = template.split("/")
    if "{hour}" in levels[-1]:
        levels = levels[:-1]
    return "/".join(levels).format(date=day.isoformat(), year=f"{day.year:04d}", month=f"{day.month:02d}",
                                   day=f"{day.day:02d}")


def partition_uri(uri: str, day: date, template: str = DEFAULT_PARTITIONS) -> str:
    return s3.join(uri, day_prefix(template, day))


def _hour_level(template: str) -> re.Pattern[str] | None:
    """What the level under a day's directory must look like when the template has an hour level."""
    last = template.split("/")[-1]
    if "{hour}" not in last:
        return None
    before, _, after = last.partition("{hour}")
    return re.compile(re.escape(before) + r"([01][0-9]|2[0-3])" + re.escape(after))


def _date_level(template: str) -> str | None:
    """``dt=`` for ``dt={date}``: a one-level layout whose names sort by day, listed in one ordered pass."""
    if "/" not in template and template.endswith("{date}") and "{" not in template[:-len("{date}")]:
        return template[:-len("{date}")]
    return None


def _keep(obj: dict[str, Any], suffix: str) -> bool:
    return obj["Key"].endswith(suffix) and not any(m in obj["Key"] for m in _SKIP) and obj["Size"] > 0


def _list_ordered(client: Any, bucket: str, base: str, literal: str, start: date, end: date,
                  suffix: str) -> dict[str, list[tuple[str, int]]]:
    found: dict[str, list[tuple[str, int]]] = {}
    lo, hi = f"{base}{literal}{start.isoformat()}", f"{base}{literal}{end.isoformat()}"
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{base}{literal}", StartAfter=lo,
                                   PaginationConfig={"PageSize": LIST_PAGE}):
        objects = page.get("Contents", [])
        for obj in objects:
            if obj["Key"] >= hi:
                break
            day = obj["Key"][len(base) + len(literal):].split("/", 1)[0]
            if _keep(obj, suffix):
                found.setdefault(day, []).append((f"s3://{bucket}/{obj['Key']}", obj["Size"]))
        if objects and objects[-1]["Key"] >= hi:  # past the interval: the later pages are not listed
            break
    return found


def hour_dir(template: str, day: date, hour: int) -> str:
    """The directory of one hour's data under the source's prefix."""
    last = template.split("/")[-1].format(date=day.isoformat(), year=f"{day.year:04d}", month=f"{day.month:02d}",
                                          day=f"{day.day:02d}", hour=f"{hour:02d}")
    return f"{day_prefix(template, day)}/{last}"


def _list_by_day(client: Any, bucket: str, base: str, template: str, wanted: list[date],
                 suffix: str, hour: int | None = None) -> dict[str, list[tuple[str, int]]]:
    """One listing per day's directory (or per hour's, given ``hour``), in threads (a layout whose
    names do not sort by day)."""
    hours = _hour_level(template) if hour is None else None

    def one(day: date) -> list[tuple[str, int]]:
        prefix = f"{base}{day_prefix(template, day) if hour is None else hour_dir(template, day, hour)}/"
        out = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix,
                                                                     PaginationConfig={"PageSize": LIST_PAGE}):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(prefix):]
                if hours is not None and ("/" not in rest or not hours.fullmatch(rest.split("/", 1)[0])):
                    continue  # not inside an hour's directory
                if _keep(obj, suffix):
                    out.append((f"s3://{bucket}/{obj['Key']}", obj["Size"]))
        return sorted(out)

    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        listed = dict(zip((d.isoformat() for d in wanted), pool.map(one, wanted), strict=True))
    return {d: files for d, files in listed.items() if files}


def resolve(client: Any, src: S3SourceConfig, start: date, end: date, *, all_required: bool = False,
            hour: int | None = None) -> ResolvedInput:
    """List the data files of every day's partition in ``[start, end)`` (its hours' too, with an hour level).

    :param all_required: every day must have data (scoring); otherwise at least one (training).
    :param hour: only this hour of each day (a layout with an ``{hour}`` level).
    """
    if end <= start:
        raise InputDataError("interval", f"[{start}, {end})", "is empty", "use an end date after the start date")
    bucket, prefix = s3.split_uri(src.uri)
    suffix = f".{src.format}"
    base = f"{prefix.rstrip('/')}/" if prefix else ""
    wanted_days = days(start, end)
    literal = _date_level(src.partitions) if hour is None else None
    try:
        found = (_list_ordered(client, bucket, base, literal, start, end, suffix) if literal is not None
                 else _list_by_day(client, bucket, base, src.partitions, wanted_days, suffix, hour))
    except client.exceptions.NoSuchBucket:
        raise SourceNotFoundError("source.s3.uri", src.uri, f"bucket {bucket!r} does not exist",
                                  "create the bucket or fix the URI") from None
    wanted = [d.isoformat() for d in wanted_days]
    missing = tuple(d for d in wanted if d not in found)
    if len(missing) == len(wanted) or (all_required and missing):
        first = date.fromisoformat(missing[0])
        where = (partition_uri(src.uri, first, src.partitions) if hour is None
                 else s3.join(src.uri, hour_dir(src.partitions, first, hour)))
        raise SourceNotFoundError("source.s3.uri", where,
                                  f"no {src.format} files for {len(missing)} of {len(wanted)} day(s) in [{start}, {end}) "
                                  f"(partitions laid out as {src.partitions})",
                                  "check the bucket, the prefix, source.s3.partitions and the interval "
                                  "(is the partition loaded yet?)")
    files = [(f, d) for d in wanted if d in found for f in found[d]]
    return ResolvedInput(files=tuple(u for (u, _), _ in files), total_bytes=sum(n for (_, n), _ in files),
                         days_found=tuple(d for d in wanted if d in found), days_missing=missing,
                         file_days=tuple(d for _, d in files))


def import_frame(h2o: Any, resolved: ResolvedInput, fmt: str, destination: str,
                 col_types: dict[str, str] | None = None, *, client: Any = None,
                 client_fetch_max_bytes: int = 0, columns: Sequence[str] | None = None) -> Any:
    """Import all files of ``resolved`` as one frame named ``destination``.

    With ``client`` and at most ``client_fetch_max_bytes`` of input, the task downloads the
    files and uploads them as one (:func:`fetch_and_upload`); of Parquet files only
    ``columns`` are uploaded. Otherwise, or when a Parquet column has a type the upload would
    change (:func:`uploadable`), the cluster imports them. Parquet files carry their schema,
    so the cluster's parse is set up from the first file only: H2O's setup over every file
    reads and samples each one, 4-7 s of a 12-20 s import of 365 daily files. Its chunks are
    sized for every file's bytes (:mod:`h2o_tasks.chunking`). With ``client``
    the column names of every file's footer are compared while the nodes parse (a tail read
    per file, in parallel): a file with other columns is an error naming it, as H2O's full
    setup would fail. A parse that still fails runs the full setup to report H2O's reason.
    """
    files = list(resolved.files)
    frame = None
    if client is not None and 0 < resolved.total_bytes <= client_fetch_max_bytes:
        try:
            frame = fetch_and_upload(h2o, client, files, fmt, destination, col_types, columns)
        except NoRows:
            raise _no_rows(resolved) from None
    if frame is None:
        frame = _import_by_nodes(h2o, files, resolved.total_bytes, fmt, destination, col_types, client)
    if frame.nrows == 0:
        h2o.remove(frame)
        raise _no_rows(resolved)
    return frame


def _import_by_nodes(h2o: Any, files: list[str], total_bytes: int, fmt: str, destination: str,
                     col_types: dict[str, str] | None, client: Any) -> Any:
    """The H2O nodes import and parse the objects themselves (with ``client``: footers checked meanwhile)."""
    if fmt == "csv":
        return h2o.import_file(path=files, destination_frame=destination, header=1, col_types=col_types or None,
                               na_strings=CSV_NA)
    if len(files) == 1:
        return h2o.import_file(path=files, destination_frame=destination)
    if client is None:
        return _parse_parquet(h2o, files, total_bytes, destination)
    return _parse_checked(h2o, client, files, total_bytes, destination)


def _parse_checked(h2o: Any, client: Any, files: list[str], total_bytes: int, destination: str) -> Any:
    """:func:`_parse_parquet` while the task checks the files' footers (:func:`check_parquet_columns`).

    The check is one ranged GET per file (1.2-1.6 s for 365 daily files at 16x), the parse the
    nodes' work: side by side, a remote S3's latency is hidden. A file with other columns cancels
    the parse (or drops its frame), and its error is raised, not H2O's.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="footer-check")
    frame = None
    try:
        check = pool.submit(check_parquet_columns, client, files)
        check.add_done_callback(functools.partial(_cancel_if_failed, h2o, destination))
        frame = _parse_parquet(h2o, files, total_bytes, destination, check)
        check.result()
    except BaseException as exc:
        if frame is not None:  # parsed, and the check failed (or the task was stopped waiting for it)
            _remove_quietly(h2o, destination)
        # a stopped task (a timeout, a signal) returns at once: the check ends on its own
        pool.shutdown(wait=isinstance(exc, Exception))
        raise
    pool.shutdown()
    return frame


def _cancel_if_failed(h2o: Any, destination: str, check: Future[None]) -> None:
    if check.exception() is not None:
        _cancel_parse(h2o, destination)


CANCEL_WAIT_S = 30.0
_UNFINISHED = ("RUNNING", "CANCEL_PENDING")


def _cancel_parse(h2o: Any, destination: str, wait: bool = False) -> None:
    """Cancel the running parse into ``destination``, if any: its frame would be dropped. With
    ``wait``, until the job has ended (H2O then has removed what it wrote), at most :data:`CANCEL_WAIT_S`."""
    with contextlib.suppress(Exception):  # not started yet, or already ended: the caller drops the frame
        key = _running_parse(h2o, destination)
        if key is None:
            return
        h2o.api(f"POST /3/Jobs/{key}/cancel")
        deadline = time.monotonic() + (CANCEL_WAIT_S if wait else 0)
        while time.monotonic() < deadline and h2o.api(f"GET /3/Jobs/{key}")["jobs"][0]["status"] in _UNFINISHED:
            time.sleep(0.1)


def _running_parse(h2o: Any, destination: str) -> str | None:
    """The key of the running job that writes ``destination``."""
    for job in h2o.api("GET /3/Jobs")["jobs"]:
        if job["status"] == "RUNNING" and (job.get("dest") or {}).get("name") == destination:
            return job["key"]["name"]
    return None


class NoRows(Exception):
    """The downloaded files hold no rows."""


def _no_rows(resolved: ResolvedInput) -> InputDataError:
    return InputDataError("interval", f"{resolved.days_found[0]}..{resolved.days_found[-1]}",
                          "the partition files hold no rows", "check the upstream job that writes them")


CSV_NA = ["NA", ""]


def each_object(files: Sequence[str], act: Callable[[int, str, str], T], threads: int = FETCH_THREADS) -> list[T]:
    """``act(index, bucket, key)`` for every object of ``files``, in parallel; the results in order.

    An object that cannot be read (gone since the listing, access denied) is an error naming it;
    the first error stops the calls not yet started.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    def one(index: int) -> T:
        bucket, key = s3.split_uri(files[index])
        try:
            return act(index, bucket, key)
        except (ClientError, BotoCoreError) as exc:
            raise SourceNotFoundError("source.s3.uri", files[index], f"could not be read ({exc})",
                                      "check that the object still exists and the credentials (aws_conn_id) may "
                                      "read it, then rerun the task") from exc

    if len(files) == 1:
        return [one(0)]
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(files)))) as pool:
        futures = [pool.submit(one, i) for i in range(len(files))]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def fetch_objects(client: Any, files: Sequence[str], read: Callable[[str, bytes], T],
                  threads: int = FETCH_THREADS) -> list[T]:
    """Download ``files`` in parallel, each body turned by ``read(uri, body)`` in its thread; in order."""
    return each_object(files, lambda i, bucket, key: read(files[i], client.get_object(Bucket=bucket, Key=key)["Body"]
                                                           .read()), threads)


def read_parquet(uri: str, body: bytes, columns: Sequence[str] | None = None) -> tuple[list[str], Any]:
    """A downloaded Parquet object's column names, and its table (only ``columns`` present, in that order).

    A file that is not Parquet is a clear error naming it.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(body))
        names = pf.schema_arrow.names
        return names, pf.read(columns=None if columns is None else [c for c in columns if c in names])
    except (pa.ArrowException, OSError) as exc:
        raise InputDataError("source.s3.uri", uri, f"is not a readable Parquet file ({exc})",
                             "rewrite or remove the file, or set source.s3.format") from exc


def fetch_parquet(client: Any, files: Sequence[str], columns: Sequence[str] | None = None) -> Any:
    """The Parquet files as one Arrow table (numeric types widened as H2O's parse would).

    Every file must have the first file's columns in its order, and every one of ``columns``
    (then only those are kept, in that order).
    """
    import pyarrow as pa

    read = fetch_objects(client, files, lambda uri, body: read_parquet(uri, body, columns))
    names, tables = [n for n, _ in read], [t for _, t in read]
    for uri, cols in zip(files[1:], names[1:], strict=True):
        if cols != names[0]:
            raise _columns_error(uri, cols, files[0], names[0])
    missing = [c for c in columns or () if c not in names[0]]
    if missing:
        raise InputDataError("source.s3.uri", files[0], f"lacks the pipeline's column(s) {missing} "
                             f"(its columns: {', '.join(names[0])})",
                             "fix the feature or target names in the pipeline, or the source")
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise InputDataError("source.s3.uri", _first_conflict(files, tables),
                             f"has column types that do not combine with the files before it "
                             f"({' '.join(str(exc).split())[:300]}); the partition files' schemas differ",
                             "rewrite the partitions with one schema (same columns, order and types)") from exc


def _first_conflict(files: Sequence[str], tables: Sequence[Any]) -> str:
    """The first file whose schema does not unify with those of the files before it."""
    import pyarrow as pa

    schema = tables[0].schema
    for uri, table in zip(files[1:], tables[1:], strict=True):
        try:
            schema = pa.unify_schemas([schema, table.schema], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return uri
    return files[-1]


def uploadable(schema: Any) -> bool:
    """Whether every column survives a rewrite to Parquet as H2O's parse would read the source.

    Timestamps read as nanoseconds (Spark's INT96, pandas' NANOS) would be written back as
    INT64 nanoseconds, which H2O parses as numbers, not times; decimals change their physical
    type; nested and binary columns are left to H2O's own reader.
    """
    import pyarrow.types as t

    for col in schema:
        ty = col.type.value_type if t.is_dictionary(col.type) else col.type
        if t.is_timestamp(ty):
            if ty.unit not in ("ms", "us"):
                return False
        elif not (t.is_boolean(ty) or t.is_integer(ty) or t.is_floating(ty) or t.is_string(ty)
                  or t.is_large_string(ty) or t.is_date32(ty) or t.is_null(ty)):
            return False
    return True


def fetch_csv(client: Any, files: Sequence[str], out: Path) -> int:
    """The CSV files as one, written to ``out``: the first file's header once, every file's rows.

    Returns the number of bytes of rows written.
    """
    bodies = fetch_objects(client, files, lambda _uri, body: body)
    header = bodies[0].split(b"\n", 1)[0].rstrip(b"\r")
    written = 0
    with out.open("wb") as f:
        for uri, body in zip(files, bodies, strict=True):
            line, _, rows = body.partition(b"\n")
            if (got := line.rstrip(b"\r")) != header:
                raise InputDataError("source.s3.uri", uri, f"has the header {got.decode(errors='replace')!r}"
                                     f", not {files[0]}'s {header.decode(errors='replace')!r}",
                                     "rewrite the partitions with one header (same columns in the same order)")
            f.write(body if uri == files[0] else rows)
            written += len(rows.strip())
            if body and not body.endswith(b"\n"):
                f.write(b"\n")
    return written


def fetch_and_upload(h2o: Any, client: Any, files: Sequence[str], fmt: str, destination: str,
                     col_types: dict[str, str] | None = None, columns: Sequence[str] | None = None) -> Any:
    """Download the files (threads), write them as one file and have the cluster parse that.

    Parquet: only ``columns`` are decoded and uploaded. Raises :class:`NoRows` when the files
    hold no rows; returns None when a Parquet column's type would not survive the rewrite
    (:func:`uploadable`): the nodes then read the files themselves. The temporary file is
    always removed; the upload's raw key and a partial frame too when the parse fails.
    """
    with scratch.directory("h2o-s3-fetch-") as tmp:
        path = Path(tmp) / f"{destination}.{fmt}"
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = fetch_parquet(client, files, columns)
            if table.num_rows == 0:
                raise NoRows
            if not uploadable(table.schema):
                return None
            pq.write_table(table, path, compression="none", row_group_size=UPLOAD_ROW_GROUP)
            del table
            options: dict[str, Any] = {}
        else:
            if fetch_csv(client, files, path) == 0:
                raise NoRows
            options = {"header": 1, "column_types": col_types, "na_strings": CSV_NA}
        return upload.parse_upload(h2o, path, destination, **options)


PARQUET_TAIL = 1 << 16  # one ranged read holds the footer of any ordinary partition file


def parquet_columns(client: Any, uri: str) -> list[str]:
    """The column names in a Parquet object's footer (one ranged GET, a second for a big footer)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bucket, key = s3.split_uri(uri)
    tail = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{PARQUET_TAIL}")["Body"].read()
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        raise InputDataError("source.s3.uri", uri, "is not a Parquet file (no PAR1 footer)",
                             "remove it from the partition or set source.s3.format")
    size = int.from_bytes(tail[-8:-4], "little")
    if size + 8 > len(tail):
        tail = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{size + 8}")["Body"].read()
    footer = b"PAR1" + tail[-(size + 8):]  # magic + metadata + length + magic: a file with no row groups read
    try:
        return pq.ParquetFile(pa.BufferReader(footer)).schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise InputDataError("source.s3.uri", uri, f"has an unreadable Parquet footer ({exc})",
                             "rewrite or remove the file") from exc


def check_parquet_columns(client: Any, files: list[str], threads: int = FETCH_THREADS) -> None:
    """Every file has the first file's columns, in its order."""
    names = each_object(files, lambda i, _bucket, _key: parquet_columns(client, files[i]), threads)
    for uri, cols in zip(files[1:], names[1:], strict=True):
        if cols != names[0]:
            raise _columns_error(uri, cols, files[0], names[0])


def _columns_error(uri: str, cols: list[str], first_uri: str, first: list[str]) -> InputDataError:
    missing = [c for c in first if c not in cols]
    extra = [c for c in cols if c not in first]
    how = (f"lacks {missing}" if missing else "") + (" and " if missing and extra else "") + \
          (f"has extra {extra}" if extra else "") or f"orders its columns {cols}"
    return InputDataError("source.s3.uri", uri, f"{how}: its Parquet schema differs from {first_uri} "
                          f"(columns {first}); the partition files' schemas differ",
                          "rewrite the partitions with one schema (same columns in the same order)")


LISTED_IMPORT_MIN_FILES = 8  # from this many files, the nodes' import lists their common prefix once
# above it (about 800 daily files) each file is imported alone: the pattern is a form field of the
# request (Jetty's limit is 200 kB) and H2O tries each alternative at each position of every listed key
LISTED_IMPORT_MAX_PATTERN = 32_000


def lazy_import(h2o: Any, files: Sequence[str]) -> list[str]:
    """The nodes' raw keys of ``files``, in the order of ``files``.

    H2O imports each S3 path with a listing of its own, one after another: for 365 daily files
    that is 365 requests (3.3-4 s on the benchmark's server) before the parse starts. From
    :data:`LISTED_IMPORT_MIN_FILES` files the cluster lists their longest common key prefix once
    (0.5 s) and keeps the keys a pattern accepts: one that ends with a file's key after that
    prefix (H2O 3.46 matches the pattern as a whole, so it starts with ``.*``). The keys it kept
    must then be exactly ``files``; otherwise (a key that merely ends the same way, another
    H2O's pattern rules) they are removed and every file is imported on its own.
    """
    common = _common_prefix(files)
    if len(files) < LISTED_IMPORT_MIN_FILES or common is None:
        return h2o.lazy_import(list(files))
    pattern = ".*(?:" + "|".join(re.escape(f[len(common):]) for f in files) + ")"
    if len(pattern) > LISTED_IMPORT_MAX_PATTERN:
        return h2o.lazy_import(list(files))
    try:
        keys = h2o.lazy_import(common, pattern=pattern)
    except Exception:  # whatever H2O made of the listing, the import of each file on its own decides
        return h2o.lazy_import(list(files))
    if sorted(keys) == sorted(files):
        return list(files)
    for key in keys:
        _remove_quietly(h2o, key)
    return h2o.lazy_import(list(files))


def _common_prefix(files: Sequence[str]) -> str | None:
    """The longest common prefix of the S3 URIs ``files`` (S3 prefixes are strings, not folders), if in one bucket."""
    lo, hi = min(files), max(files)  # what the first and the last in order share, all share
    n = 0
    while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
        n += 1
    if not lo.startswith("s3://") or "/" not in lo[5:]:
        return None
    return lo[:n] if n > lo.index("/", 5) else None


def _parse_parquet(h2o: Any, files: list[str], total_bytes: int, destination: str,
                   check: Future[None] | None = None) -> Any:
    """Parse ``files`` (``total_bytes`` in all) with a setup from the first one, in chunks sized for
    all of them. A failed ``check`` of the files is raised in place of any other error: before the
    parse when already known, else once the check is done. Nothing is left behind on an error."""
    from h2o.exceptions import H2OJobCancelled

    raw: list[str] = []
    parsing = False
    try:
        raw = lazy_import(h2o, files)
        setup = h2o.parse_setup(raw[:1])
        setup["source_frames"] = [{"name": key} for key in raw]
        setup["chunk_size"] = chunking.whole_input_chunk_size(h2o, setup, total_bytes)
        if check is not None and check.done():
            check.result()
        parsing = True
        return h2o.parse_raw(setup, id=destination)
    except BaseException as exc:
        stopped = not isinstance(exc, Exception)  # a task timeout or a signal: no waiting on the check
        if parsing and stopped:  # outside H2O's own poll (which cancels on Ctrl-C), the job would run on
            _cancel_parse(h2o, destination, wait=True)
        for key in (destination, *raw):  # the partial frame and the imported file keys
            _remove_quietly(h2o, key)
        if check is not None and not stopped:
            check.result()
        if parsing and not stopped and not isinstance(exc, H2OJobCancelled):
            _schema_error(h2o, files, exc)
        raise


def _schema_error(h2o: Any, files: list[str], exc: Exception) -> None:
    """Raise the clear error when the files differ in schema (H2O's setup over all of them says how)."""
    raw = lazy_import(h2o, files)
    try:
        h2o.parse_setup(raw)
    except Exception as setup_exc:
        detail = " ".join(str(setup_exc).split())
        raise InputDataError("source.s3.uri", files[0].rsplit("/", 1)[0],
                             f"has partition files whose Parquet schemas differ (first file {files[0]}; "
                             f"H2O: {detail[:400]})",
                             "rewrite the partitions with one schema (same columns, order and types)") from exc
    finally:
        for key in raw:
            _remove_quietly(h2o, key)


def _remove_quietly(h2o: Any, key: str) -> None:
    with contextlib.suppress(Exception):  # the failed parse may not have created it
        h2o.remove(key)
