"""The offline engine's data path, streamed: S3 files to the scorer's CSV, its output back beside the ids.

Memory is bounded by a record batch (and by one period's predictions, which :func:`h2o_tasks.predictions.publish`
checks and writes to Hive), never by the interval: every source file is downloaded to disk, read in
record batches and written as CSV by Arrow's C++ writer into the scorer's one input; the scorer's
output's lines are read back in batches and joined by position, as text, to the same files' id
columns, read again from disk, with a count check per batch: the predictions in the parts are the
scorer's bytes (PredictCsv's format), never parsed and formatted again.

The scorer's input text for a feature (:func:`feature_text`, then :func:`csv_text`):

- a numeric feature (integers, decimals, floats, or a column null in one file) as Arrow's text of
  it cast to float64, so every file makes one input type;
- an ``enum`` feature read as floats has whole numbers written as integers (``1545`` and not
  ``1545.0``: the level H2O made of them); its other values as Arrow writes them; other ``enum``
  and string features as their text;
- booleans as ``True``/``False`` (as pandas wrote them);
- NaN as an empty cell (NA), as pandas wrote it;
- a backslash doubled (opencsv, the scorer's reader, takes it for an escape). A batch is written
  unquoted unless one of its values needs quotes.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from h2o_tasks.errors import InputDataError

BATCH_ROWS = 65_536
# Arrow's streaming CSV reader keeps a few dozen blocks read ahead even on one thread: 35 MiB live
# with 1 MiB blocks, 9 MiB with 256 KiB ones (measured on the scorer's output), and no slower
READ_BLOCK = 256 * 1024
DOWNLOAD_THREADS = 8
WHOLE_LIMIT = 2.0**53  # beyond it a double holds no fraction, nor every integer


@dataclass
class LocalPeriod:
    """A period's source files, downloaded: the paths in source order and their rows."""

    key: Any
    paths: list[Path]
    rows: int = 0


@dataclass
class InputWritten:
    """What :func:`write_scorer_input` wrote: rows per period and unseen levels per feature."""

    periods: list[LocalPeriod]
    unseen: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.periods)


M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap the C library's malloc arenas of this process (glibc's ``M_ARENA_MAX``); False where it cannot.

    glibc gives each new thread an arena of its own, up to 8 per core. The commit threads' freed
    request and response buffers stayed resident in theirs, so the task's peak grew with the
    interval: 223-234 MiB at 16x against 208-209 MiB with 2 arenas (176-181 MiB at 1x either way),
    and no slower. Process-wide and kept, which suits a task process (Airflow runs one task per
    process). A limit set in the environment (``MALLOC_ARENA_MAX``, ``GLIBC_TUNABLES``'s
    ``glibc.malloc.arena_max``) is left as it is. glibc fixes its limit once it has made 8 arenas,
    so the call counts where it comes early: True says the C library took the setting.
    """
    import ctypes
    import os

    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library with mallopt (macOS, Windows): nothing to cap
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))  # musl's mallopt does nothing and returns 0


ARROW_DECAY_MS = 100  # jemalloc hands freed pages back after this long (Arrow's build: 1 s, no better than glibc here)


@contextlib.contextmanager
def arrow_allocator() -> Iterator[None]:
    """Arrow's allocations in the block go to jemalloc, which returns freed pages within
    :data:`ARROW_DECAY_MS`; the C library's allocator where Arrow was built without jemalloc.

    Arrow's default pool, mimalloc, kept the freed pages of earlier batches: writing the scorer's
    input of 5.4M rows peaked at 189 MiB with it, 141 MiB with the C library's allocator. That one
    kept its own instead, once the join's arrays passed a megabyte (16x data): glibc's heap grew
    from 33 to 65 MiB over the commits with 36 MiB in use, as the freed arrays were cut up by the
    commit threads' small allocations. With jemalloc and a short decay glibc's heap stays at 32 MiB
    and the task peaked at 207-208 MiB against 212-218 MiB, at no CPU cost (a decay of 0 took 25%
    more of the task's CPU). Buffers keep the pool that made them, so switching is safe.
    """
    import pyarrow as pa

    before = pa.default_memory_pool()
    try:
        # before jemalloc's first allocation: its arenas take the setting when they are made
        pa.jemalloc_set_decay_ms(ARROW_DECAY_MS)
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc (Windows)
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(before)


def download(client: Any, files_by_period: list[tuple[Any, list[str]]], directory: Path,
             threads: int = DOWNLOAD_THREADS) -> list[LocalPeriod]:
    """Every period's files to ``directory`` (streamed to disk, in parallel), in source order."""
    from h2o_tasks.sources.s3 import each_object

    directory.mkdir(parents=True, exist_ok=True)
    uris: list[str] = []
    paths: list[Path] = []
    periods = []
    for i, (key, period_uris) in enumerate(files_by_period):
        period_paths = [directory / f"{i:05d}-{j:04d}{Path(uri).suffix}" for j, uri in enumerate(period_uris)]
        uris.extend(period_uris)
        paths.extend(period_paths)
        periods.append(LocalPeriod(key, period_paths))
    if uris:
        each_object(uris, lambda j, bucket, key: client.download_file(bucket, key, str(paths[j])), threads)
    return periods


def batches(path: Path, fmt: str, columns: list[str] | None = None) -> Iterator[Any]:
    """The record batches of a downloaded file (Parquet: by row group, ``BATCH_ROWS`` at most; CSV: the
    file read whole, as its types are inferred over all of it, then cut)."""
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            wanted = None if columns is None else [c for c in columns if c in names]
            yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=wanted)
            return
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(path)
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        yield from table.to_batches(max_chunksize=BATCH_ROWS)
    except (pa.ArrowException, OSError) as exc:
        raise InputDataError("scoring input", path.name, f"could not be read as {fmt} ({exc})",
                             "check the partition's files") from exc


def column_names(path: Path, fmt: str) -> list[str]:
    """A downloaded file's column names (Parquet: from its footer)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).schema_arrow.names
    import pyarrow.csv as pcsv

    return pcsv.open_csv(str(path)).schema.names  # as Arrow reads the file (a byte-order mark dropped)


def feature_text(array: Any, kind: str) -> Any:
    """One feature's values as the scorer reads them (the module docstring's rules)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_boolean(array.type):
        return pc.if_else(array, "True", "False")
    if pa.types.is_floating(array.type):
        array = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
        if kind == "enum":
            whole = pc.and_(pc.equal(pc.floor(array), array), pc.less(pc.abs(array), WHOLE_LIMIT))
            as_int = pc.cast(pc.if_else(whole, array, 0.0), pa.int64(), safe=False).cast(pa.string())
            return pc.if_else(whole, as_int, array.cast(pa.string()))
    if kind == "enum" or pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array.cast(pa.string())
    if pa.types.is_null(array.type) or pa.types.is_integer(array.type) or pa.types.is_floating(array.type) \
            or pa.types.is_decimal(array.type):
        # one type for every file: a column empty in one file (null) or whole in one (int64) and
        # fractional in another still makes one input
        return array.cast(pa.float64())
    return array


def csv_text(array: Any) -> Any:
    """Text as opencsv (the scorer's reader) gives it back: its escape character ``\\`` doubled."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(array.type):
        return pc.replace_substring(array, "\\", "\\\\")
    return array


def scorer_batch(batch: Any, features: list[dict[str, Any]], version: str, unseen: dict[str, int]) -> Any:
    """The model's features of ``batch`` as the scorer's input columns; unseen levels added to ``unseen``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = batch.schema.names
    arrays = []
    for f in features:
        if f["name"] not in names:
            raise InputDataError("scoring input", f["name"], f"is a feature of model {version} but is missing "
                                                             f"from the input (columns: {', '.join(names)})",
                                 "add the column to the scoring data or retrain without it")
        col = feature_text(batch.column(f["name"]), f["type"])
        if f["type"] == "enum" and f.get("domain"):
            new = pc.sum(pc.and_(pc.is_valid(col), pc.invert(pc.is_in(col, value_set=pa.array(f["domain"])))))
            if new.as_py():
                unseen[f["name"]] = unseen.get(f["name"], 0) + new.as_py()
        arrays.append(csv_text(col))
    return pa.RecordBatch.from_arrays(arrays, names=[f["name"] for f in features])


def write_scorer_input(periods: list[LocalPeriod], fmt: str, features: list[dict[str, Any]], version: str,
                       out: Path) -> InputWritten:
    """Every period's rows, in order, as one CSV for the scorer (one header); rows counted per period.

    Numbers are written as doubles and categoricals as text, so files that typed a column
    differently make one input; a file whose column cannot be read so is an error naming it.
    Values are quoted only in a batch that needs it (a comma, a quote or a line end in a value):
    a file without quotes lets the scorer cut it into ranges for every model.
    """
    import pyarrow as pa

    written = InputWritten(periods)
    schema = None
    names = [f["name"] for f in features]
    with pa.OSFile(str(out), "wb") as sink:
        sink.write((",".join(_header_cell(n) for n in names) + "\n").encode())
        for period in periods:
            for path in period.paths:
                for batch in batches(path, fmt, names):
                    cols = scorer_batch(batch, features, version, written.unseen)
                    if schema is None:
                        schema = cols.schema
                    elif cols.schema != schema:
                        try:
                            cols = cols.cast(schema)
                        except (pa.ArrowException, ValueError) as exc:
                            raise InputDataError("scoring input", path.name, f"has feature types {cols.schema} "
                                                 f"where earlier files had {schema} ({exc})",
                                                 "write every partition with the same column types") from exc
                    _write_rows(cols, sink)
                    period.rows += cols.num_rows
    return written


def _header_cell(name: str) -> str:
    return f'"{name.replace(chr(34), chr(34) * 2)}"' if any(c in name for c in ',"\r\n') else name


def _write_rows(batch: Any, sink: Any) -> None:
    """``batch`` as CSV rows without quotes, or with Arrow's quotes when a value needs them."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    text = pa.BufferOutputStream()  # the whole batch first: Arrow writes and fails 1024 rows at a time
    try:
        pcsv.write_csv(batch, text, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    except pa.ArrowInvalid:
        text = pa.BufferOutputStream()
        pcsv.write_csv(batch, text, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
    sink.write(text.getvalue())


def count_rows(path: Path) -> int:
    """Data rows of a CSV with a header, as Arrow reads it (one column parsed, streamed)."""
    import pyarrow.csv as pcsv

    with path.open(newline="") as f:
        import csv

        first = next(csv.reader(f), [""])[0]
    reader = pcsv.open_csv(str(path), convert_options=pcsv.ConvertOptions(include_columns=[first]),
                           read_options=pcsv.ReadOptions(block_size=READ_BLOCK, use_threads=False))
    return sum(b.num_rows for b in reader)


LINE_DELIMITER = "\x1f"  # a byte the scorer never writes: each of its lines is read as one cell


class PredictionLines:
    """The scorer's output CSV as its lines of text (header apart), handed out ``n`` at a time: the
    predictions reach the parts as the scorer wrote them, byte for byte, never parsed and formatted again."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        self._reader = pcsv.open_csv(
            str(path),
            # one thread, small blocks: threaded reading runs ahead by tens of 4 MiB blocks (140 MB
            # measured) while the commits hold the consumer
            read_options=pcsv.ReadOptions(block_size=READ_BLOCK, use_threads=False, skip_rows=1, column_names=["line"]),
            parse_options=pcsv.ParseOptions(delimiter=LINE_DELIMITER, quote_char=False),
            convert_options=pcsv.ConvertOptions(column_types={"line": pa.string()}))
        self._pending: list[Any] = []
        self._have = 0
        self._done = False

    def take(self, n: int) -> Any:
        """The next ``n`` lines, without their line ends (fewer only when the output has ended)."""
        import pyarrow as pa

        while self._have < n and not self._done:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                self._done = True
                break
            self._pending.append(batch.column(0))
            self._have += batch.num_rows
        lines = pa.chunked_array(self._pending, pa.string()).combine_chunks()
        head, rest = lines.slice(0, n), lines.slice(n)
        self._pending, self._have = [rest], len(rest)
        return head

    def left(self) -> int:
        """Lines not taken yet (reads the rest of the output)."""
        return self._have + sum(b.num_rows for b in self._reader)


def id_arrays(batch: Any, columns: list[tuple[str, str]]) -> list[Any]:
    """The id columns of ``batch`` typed as the output's (times as milliseconds since the epoch)."""
    import pyarrow as pa

    from h2o_tasks import predictions

    out = []
    for c, hive_type in columns:
        if c not in batch.schema.names:
            raise InputDataError("scoring.id_columns", c, f"is not a column of every scoring input file "
                                                          f"(columns: {', '.join(batch.schema.names)})",
                                 "fix scoring.id_columns or the partition's files")
        col = batch.column(c)
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            col = col.cast(pa.timestamp("ms")).cast(pa.int64())
        out.append(col.cast(predictions.arrow_schema([(c, hive_type)]).field(0).type))
    return out


def id_text(array: Any) -> Any:
    """An id column (typed by :func:`id_arrays`) as Arrow's CSV writer writes it: numbers in Arrow's
    text, strings quoted with their quotes doubled, a null as an empty cell."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(array.type):
        array = pc.binary_join_element_wise('"', pc.replace_substring(array, '"', '""'), '"', "")
    return pc.fill_null(array.cast(pa.string()), "")


def part_header(names: list[str]) -> bytes:
    """A part's header line: every name quoted, as Arrow's CSV writer writes it."""
    return (",".join('"' + n.replace('"', '""') + '"' for n in names) + "\n").encode()


def join_period(period: LocalPeriod, fmt: str, id_columns: list[tuple[str, str]], preds: PredictionLines,
                names: list[str], out: Path, typed: Any = None) -> tuple[int, Any]:
    """The period's id columns beside its lines of ``preds``, batch by batch, written as one CSV part
    (header ``names``): the rows written, and with ``typed`` (the part's Arrow schema) the part as a
    table too, for a Hive table: the ids as read (nulls and NaN kept), the predictions parsed from the
    text written. The prediction columns are the scorer's text (PredictCsv's format); a period without
    rows is a part with its header alone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = [c for c, _ in id_columns]
    rows, tables = 0, []
    with pa.OSFile(str(out), "wb") as sink:
        sink.write(part_header(names))
        for path in period.paths:
            for batch in batches(path, fmt, ids):
                lines = preds.take(batch.num_rows)
                if len(lines) != batch.num_rows:
                    raise InputDataError("predictions", len(lines), f"end before the {batch.num_rows} input "
                                         f"rows of {path.name}", "this is a bug: report it with the task log")
                id_values = id_arrays(batch, id_columns)
                ended = pc.binary_join_element_wise(lines, "", "\n")  # each row ends its line
                joined = pc.binary_join_element_wise(*(id_text(a) for a in id_values), ended, ",")
                sink.write(_text(joined))
                rows += len(joined)
                if typed is not None:
                    tables.append(_typed_rows(id_values, ended, typed))
    if typed is None:
        return rows, None
    return rows, pa.concat_tables(tables) if tables else typed.empty_table()


def _typed_rows(id_values: list[Any], ended: Any, schema: Any) -> Any:
    """A batch's rows as ``schema``: its ids as they are, its prediction lines parsed as the scorer's CSV."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    pred_schema = pa.schema(list(schema)[len(id_values):])
    scored = pcsv.read_csv(pa.BufferReader(_text(ended)),
                           read_options=pcsv.ReadOptions(column_names=pred_schema.names, use_threads=False),
                           convert_options=pcsv.ConvertOptions(column_types=pred_schema)) \
        if len(ended) else pred_schema.empty_table()
    if scored.num_rows != len(ended):
        raise InputDataError("predictions", scored.num_rows, f"parsed from {len(ended)} lines of the scorer",
                             "this is a bug: report it with the task log")
    return pa.Table.from_arrays([*id_values, *scored.columns], schema=schema)


def _text(lines: Any) -> Any:
    """A string array's values, one after another: a slice of its data buffer, not a copy."""
    import pyarrow as pa

    if not len(lines):
        return pa.py_buffer(b"")
    _, offsets, data = lines.buffers()
    width = pa.int64() if pa.types.is_large_string(lines.type) else pa.int32()
    bounds = pa.Array.from_buffers(width, len(lines) + 1, [None, offsets], offset=lines.offset)
    return data[bounds[0].as_py():bounds[-1].as_py()]


def remove(paths: list[Path]) -> None:
    """Delete downloaded files as soon as their period is committed (the disk holds one interval at most)."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
