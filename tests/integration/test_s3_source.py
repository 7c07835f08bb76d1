"""S3 Parquet partitions parsed with a setup from the first file: same frame as H2O's full setup, clear schema errors;
and what the import of a pipeline's S3 source makes of missing values."""

from __future__ import annotations

import io
import threading
import time
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from h2o_tasks import frames, ingest, s3
from h2o_tasks.config import S3SourceConfig
from h2o_tasks.errors import InputDataError, SourceNotFoundError
from h2o_tasks.sources import s3 as s3_source
from tests.fixtures.s3 import write_day, write_days
from tests.fixtures.synthetic import linear_pipeline

pytestmark = pytest.mark.integration


def _assert_same_frame(h2o, ours, other, rows: int) -> None:
    """Same types, rows and values; both frames are removed."""
    try:
        assert ours.types == other.types and ours.nrows == other.nrows == rows
        assert ours.as_data_frame().equals(other.as_data_frame())
    finally:
        h2o.remove(ours)
        h2o.remove(other)


def _resolve(s3_settings, bucket: str, n: int, fmt: str = "parquet") -> s3_source.ResolvedInput:
    return s3_source.resolve(s3_settings.client(), S3SourceConfig(uri=f"s3://{bucket}/data", format=fmt),
                             date(2013, 2, 1), date(2013, 2, 1 + n))


def test_first_file_setup_gives_the_frame_of_a_full_setup(h2o_cloud, s3_settings, s3_bucket):
    """Later files widen ints to doubles, fill an all-null string column, and hold NAs."""
    tables = [pa.table({"x": pa.array([1, 2], pa.int64()), "s": pa.array([None, None], pa.string()),
                        "f": pa.array([1.0, 2.0], pa.float32())}),
              pa.table({"x": pa.array([1.5, 2.5]), "s": pa.array(["a", "b"]), "f": pa.array([3.5, 4.5])}),
              pa.table({"x": pa.array([7, None], pa.int32()), "s": pa.array(["c", None]),
                        "f": pa.array([None, 4.5], pa.float32())})]
    write_days(s3_settings.client(), f"s3://{s3_bucket}/data", tables)
    resolved = _resolve(s3_settings, s3_bucket, 3)
    ours = s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_first_file_setup")
    full = h2o_cloud.import_file(path=list(resolved.files), destination_frame="t_full_setup")
    _assert_same_frame(h2o_cloud, ours, full, 6)


def _nine_days_and_decoys(client, bucket: str) -> s3_source.ResolvedInput:
    """Nine days (one with a second file whose name needs escaping in a pattern), and keys under the same
    prefix that are not the window's: the next day and a marker."""
    uri = f"s3://{bucket}/data"
    write_days(client, uri, [pa.table({"x": [i + 0.5], "d": [i]}) for i in range(10)])
    write_day(client, uri, date(2013, 2, 4), pa.table({"x": [40.0], "d": [40]}), part="1+(a)")
    s3.write_bytes(client, f"{uri}/dt=2013-02-03/_SUCCESS", b"")
    resolved = _resolve_from(client, uri, 9)
    assert len(resolved.files) == 10 >= s3_source.LISTED_IMPORT_MIN_FILES
    return resolved


def _resolve_from(client, uri: str, n: int) -> s3_source.ResolvedInput:
    return s3_source.resolve(client, S3SourceConfig(uri=uri), date(2013, 2, 1), date(2013, 2, 1 + n))


@pytest.mark.parametrize("h2o_lists", ["as-documented", "ignoring-the-pattern"])
def test_the_nodes_import_many_files_from_one_listing_and_keep_the_windows_keys_only(h2o_cloud, s3_settings,
                                                                                      s3_bucket, monkeypatch, h2o_lists):
    """One listing of the common prefix, the file order kept: the frame of a per-file import. An H2O that
    matched the pattern otherwise (here: ignored it) gets its extra keys removed and each file imported alone."""
    resolved = _nine_days_and_decoys(s3_settings.client(), s3_bucket)
    real, calls = h2o_cloud.lazy_import, []

    def lazy_import(path, pattern=None):
        calls.append((path, pattern))
        return real(path, pattern=None if h2o_lists == "ignoring-the-pattern" else pattern)

    monkeypatch.setattr(h2o_cloud, "lazy_import", lazy_import)
    ours = s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_listed")
    monkeypatch.undo()
    assert calls[0] == (f"s3://{s3_bucket}/data/dt=2013-02-0", calls[0][1]) and calls[0][1].startswith(".*(?:")
    assert len(calls) == (1 if h2o_lists == "as-documented" else 2)
    assert not [k for k in h2o_cloud.ls()["key"].tolist() if s3_bucket in k]  # no decoy nor file key is left
    assert ours.as_data_frame()["d"].tolist() == [0, 1, 2, 3, 40, 4, 5, 6, 7, 8]  # the files' order
    per_file = h2o_cloud.import_file(path=list(resolved.files), destination_frame="t_per_file")
    _assert_same_frame(h2o_cloud, ours, per_file, 10)


@pytest.mark.parametrize("other", [pa.table({"x": [4.0]}), pa.table({"x": [8.0], "s": ["g"], "z": [1]}),
                                   pa.table({"s": ["h"], "x": [9.0]})],
                         ids=["missing-column", "extra-column", "other-order"])
def test_files_with_other_columns_are_named_and_leave_no_frame(h2o_cloud, s3_settings, s3_bucket, other):
    client = s3_settings.client()
    write_days(client, f"s3://{s3_bucket}/data", [pa.table({"x": [1.0, 2.0], "s": ["a", "b"]}), other])
    with pytest.raises(InputDataError) as err:
        s3_source.import_frame(h2o_cloud, _resolve(s3_settings, s3_bucket, 2), "parquet", "t_columns_differ",
                               client=client)
    assert err.value.field == "source.s3.uri" and err.value.value.endswith("dt=2013-02-02/part-0.parquet")
    assert "schemas differ" in str(err.value) and "['x', 's']" in str(err.value)
    left = h2o_cloud.ls()["key"].tolist()
    assert "t_columns_differ" not in left and not [k for k in left if s3_bucket in k]  # nor the file keys


def _parse_jobs(h2o, destination: str) -> list[str]:
    """The statuses of the cluster's jobs writing ``destination``."""
    return [j["status"] for j in h2o.api("GET /3/Jobs")["jobs"] if (j.get("dest") or {}).get("name") == destination]


def _reordered_last(monkeypatch, files, before=lambda: None) -> None:
    """The footer check reads the last file's columns reversed (a file written with another column
    order), after ``before()``; the files themselves parse as one."""
    real = s3_source.parquet_columns

    def parquet_columns(client, uri):
        if uri != files[-1]:
            return real(client, uri)
        before()
        return real(client, uri)[::-1]

    monkeypatch.setattr(s3_source, "parquet_columns", parquet_columns)


def test_a_file_found_wrong_during_the_parse_cancels_it(h2o_cloud, s3_settings, s3_bucket, monkeypatch):
    """The footers are checked while the nodes parse: a wrong one cancels the running parse, and its
    error is raised with nothing left in the cluster."""
    import numpy as np

    client = s3_settings.client()
    rng = np.random.default_rng(7)
    write_days(client, f"s3://{s3_bucket}/data",
               [pa.table({f"c{j}": rng.random(300_000) for j in range(6)}) for _ in range(8)])
    resolved = _resolve(s3_settings, s3_bucket, 8)

    def parse_running() -> None:
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while not (seen := _parse_jobs(h2o_cloud, "t_cancelled")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == ["RUNNING"], f"the parse was not seen running: {seen}"

    _reordered_last(monkeypatch, resolved.files, parse_running)
    with pytest.raises(InputDataError, match="orders its columns") as err:
        s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_cancelled", client=client)
    assert err.value.value == resolved.files[-1]
    assert _parse_jobs(h2o_cloud, "t_cancelled") == ["CANCELLED"]
    left = h2o_cloud.ls()["key"].tolist()
    assert "t_cancelled" not in left and not [k for k in left if s3_bucket in k]


def test_a_first_file_that_is_not_parquet_is_named_whatever_h2o_made_of_it(h2o_cloud, s3_settings, s3_bucket):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/data"
    write_days(client, uri, [pa.table({"x": [1.0 * i], "s": ["a"]}) for i in range(3)])
    s3.write_bytes(client, f"{uri}/dt=2013-02-01/part-0.parquet", b"\x00\x01" * 64)  # H2O sets up no parse of it
    resolved = _resolve(s3_settings, s3_bucket, 3)
    with pytest.raises(InputDataError, match="not a Parquet file") as err:
        s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_not_parquet", client=client)
    assert err.value.value == resolved.files[0]
    assert not [k for k in h2o_cloud.ls()["key"].tolist() if s3_bucket in k or k == "t_not_parquet"]


class _TaskTimeout(BaseException):
    """What Airflow raises in a task past its execution_timeout: not an Exception."""


def test_a_task_stopped_while_the_nodes_parse_cancels_the_parse_and_leaves_nothing(h2o_cloud, s3_settings,
                                                                                  s3_bucket, monkeypatch):
    import numpy as np
    from h2o.job import H2OJob

    client = s3_settings.client()
    rng = np.random.default_rng(11)
    write_days(client, f"s3://{s3_bucket}/data",
               [pa.table({f"c{j}": rng.random(300_000) for j in range(6)}) for _ in range(8)])

    resolved = _resolve(s3_settings, s3_bucket, 8)
    released, checked = threading.Event(), threading.Event()
    real_columns = s3_source.parquet_columns

    def slow_columns(client, uri):  # the footer check is still reading when the task is stopped
        if uri == resolved.files[-1]:
            released.wait(60)
            checked.set()
        return real_columns(client, uri)

    def stopped(self, poll_updates=None):  # the parse was posted and runs; the task is stopped meanwhile
        raise _TaskTimeout

    monkeypatch.setattr(s3_source, "parquet_columns", slow_columns)
    monkeypatch.setattr(H2OJob, "poll", stopped)
    try:
        with pytest.raises(_TaskTimeout):
            s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_stopped", client=client)
        assert not checked.is_set()  # the stopped task returned without waiting for the check
    finally:
        released.set()
    assert checked.wait(30)
    monkeypatch.undo()
    assert _parse_jobs(h2o_cloud, "t_stopped") == ["CANCELLED"]  # ended, not left running
    left = h2o_cloud.ls()["key"].tolist()
    assert "t_stopped" not in left and not [k for k in left if s3_bucket in k]


def test_a_file_found_wrong_before_the_parse_starts_none(h2o_cloud, s3_settings, s3_bucket, monkeypatch):
    client = s3_settings.client()
    write_days(client, f"s3://{s3_bucket}/data", [pa.table({"x": [1.0 * i], "s": ["a"]}) for i in range(3)])
    resolved = _resolve(s3_settings, s3_bucket, 3)
    _reordered_last(monkeypatch, resolved.files)
    real_import = s3_source.lazy_import

    def lazy_import(h2o, files):  # the check's answer is in before the parse is asked for
        keys = real_import(h2o, files)
        time.sleep(0.5)
        return keys

    monkeypatch.setattr(s3_source, "lazy_import", lazy_import)
    with pytest.raises(InputDataError, match="orders its columns"):
        s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_not_parsed", client=client)
    assert _parse_jobs(h2o_cloud, "t_not_parsed") == []
    assert not [k for k in h2o_cloud.ls()["key"].tolist() if s3_bucket in k or k == "t_not_parsed"]


def test_a_parse_failing_on_another_schema_reports_h2o_reason_and_leaves_no_frame(h2o_cloud, s3_settings, s3_bucket):
    write_days(s3_settings.client(), f"s3://{s3_bucket}/data", [pa.table({"x": [1.0, 2.0], "s": ["a", "b"]}),
                                                                 pa.table({"x": [8.0], "s": ["g"], "z": [1]})])
    with pytest.raises(InputDataError) as err:  # no client: no footer check, the parse itself fails
        s3_source.import_frame(h2o_cloud, _resolve(s3_settings, s3_bucket, 2), "parquet", "t_schema_differs")
    assert err.value.field == "source.s3.uri" and "schemas differ" in str(err.value)
    left = h2o_cloud.ls()["key"].tolist()
    assert "t_schema_differs" not in left and not [k for k in left if s3_bucket in k]  # nor the file keys


def test_the_parse_reads_in_the_chunks_of_a_setup_over_every_file(h2o_cloud, s3_settings, s3_bucket, monkeypatch):
    """Set up from the first file, the parse still reads in the chunks H2O's setup over all the files
    picks (so a file is one read where H2O would read it in one, not many small ones)."""
    import numpy as np

    from h2o_tasks import chunking

    client = s3_settings.client()
    rng = np.random.default_rng(3)
    write_days(client, f"s3://{s3_bucket}/data",
               [pa.table({f"c{j}": rng.random(40_000) for j in range(3)}) for _ in range(8)])
    resolved = _resolve(s3_settings, s3_bucket, 8)
    raw = h2o_cloud.lazy_import(list(resolved.files))
    try:
        full, first = h2o_cloud.parse_setup(raw), h2o_cloud.parse_setup(raw[:1])
    finally:
        for key in raw:
            h2o_cloud.remove(key)
    assert first["chunk_size"] < full["chunk_size"]  # the first file's setup alone would read in smaller chunks
    assert chunking.whole_input_chunk_size(h2o_cloud, first, resolved.total_bytes) == full["chunk_size"]
    real, used = h2o_cloud.parse_raw, []
    monkeypatch.setattr(h2o_cloud, "parse_raw", lambda setup, id: used.append(setup["chunk_size"]) or real(setup, id=id))
    frame = s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_chunks", client=client)
    h2o_cloud.remove(frame)
    assert used == [full["chunk_size"]]


def test_parquet_columns_reads_the_footer_and_rejects_other_files(s3_settings, s3_bucket):
    client = s3_settings.client()
    wide = pa.table({f"c{i:04d}": [float(i)] for i in range(3000)})  # a footer bigger than one tail read
    buf = io.BytesIO()
    pq.write_table(wide, buf)
    s3.write_bytes(client, f"s3://{s3_bucket}/wide.parquet", buf.getvalue())
    assert s3_source.parquet_columns(client, f"s3://{s3_bucket}/wide.parquet") == wide.column_names
    s3.write_bytes(client, f"s3://{s3_bucket}/not.parquet", b"a,b\n1,2\n")
    with pytest.raises(InputDataError, match="not a Parquet file"):
        s3_source.parquet_columns(client, f"s3://{s3_bucket}/not.parquet")
    s3.write_bytes(client, f"s3://{s3_bucket}/broken.parquet", b"garbage" * 20 + (12).to_bytes(4, "little") + b"PAR1")
    with pytest.raises(InputDataError, match="unreadable Parquet footer"):
        s3_source.parquet_columns(client, f"s3://{s3_bucket}/broken.parquet")


def _keys(h2o) -> set[str]:
    return set(h2o.ls()["key"].tolist())


def _fetched(h2o, s3_settings, resolved, fmt, dest, monkeypatch, col_types=None):
    """import_frame through the client path, checking that path is the one that ran."""
    calls = []
    real = s3_source.fetch_and_upload
    monkeypatch.setattr(s3_source, "fetch_and_upload", lambda *a, **k: calls.append(a) or real(*a, **k))
    frame = s3_source.import_frame(h2o, resolved, fmt, dest, col_types, client=s3_settings.client(),
                                   client_fetch_max_bytes=resolved.total_bytes)
    assert len(calls) == 1
    return frame


PARQUET_DAYS = [pa.concat_tables([day] * 10) for day in (  # repeated values: H2O guesses categoricals in either path
    pa.table({"x": pa.array([1, 2], pa.int64()), "s": pa.array([None, None], pa.string()),
              "f": pa.array([1.0, 2.0], pa.float32()), "b": [True, False],
              "t": pa.array([1_356_998_400_000_000, None], pa.timestamp("us")),
              "d": pa.array([15706, 15707], pa.date32()), "c": pa.array(["u", "v"]).dictionary_encode()}),
    pa.table({"x": pa.array([1.5, 2.5]), "s": pa.array(["a", "b"]), "f": pa.array([3.5, 4.5]), "b": [None, True],
              "t": pa.array([1_357_084_800_123_000, 1_357_171_200_000_000], pa.timestamp("us")),
              "d": pa.array([None, 15709], pa.date32()), "c": pa.array(["v", "w"]).dictionary_encode()}),
    pa.table({"x": pa.array([7, None], pa.int32()), "s": pa.array(["c", None]),
              "f": pa.array([None, 4.5], pa.float32()), "b": [False, False],
              "t": pa.array([None, 1_357_257_600_000_000], pa.timestamp("us")),
              "d": pa.array([15710, 15711], pa.date32()), "c": pa.array([None, "u"]).dictionary_encode()}))]


def test_client_fetch_gives_the_frame_the_cluster_parses_from_parquet(h2o_cloud, s3_settings, s3_bucket,
                                                                     monkeypatch):
    """Widened numbers, an all-null first string column, booleans, times, dates, dictionaries, NAs."""
    write_days(s3_settings.client(), f"s3://{s3_bucket}/data", PARQUET_DAYS)
    resolved = _resolve(s3_settings, s3_bucket, 3)
    before = _keys(h2o_cloud)
    ours = _fetched(h2o_cloud, s3_settings, resolved, "parquet", "t_fetched_parquet", monkeypatch)
    cluster = h2o_cloud.import_file(path=list(resolved.files), destination_frame="t_cluster_parquet")
    try:
        # the one difference: H2O's multi-file guess keeps "string" for a column all null in one file;
        # from one file it sees the column's few repeated values
        assert cluster.types["s"] == "string" and ours.types == {**cluster.types, "s": "enum"}
        assert ours.nrows == cluster.nrows == 60
        assert ours.as_data_frame().equals(cluster.as_data_frame())
        assert _keys(h2o_cloud) - before == {"t_fetched_parquet", "t_cluster_parquet"}  # no upload key left  # no upload key left
    finally:
        h2o_cloud.remove(ours)
        h2o_cloud.remove(cluster)


def test_client_fetch_gives_the_frame_the_cluster_parses_from_csv(h2o_cloud, s3_settings, s3_bucket, monkeypatch):
    """Headers once, CRLF, a file without a final newline, NA spellings, declared column types."""
    write_days(s3_settings.client(), f"s3://{s3_bucket}/data", [b"id,x,s\n1,1.5,a\n2,NA,b\n",
                                                                 b"id,x,s\r\n3,,c\r\n4,2,\r\n", b"id,x,s\n5,7,a"], "csv")
    resolved = _resolve(s3_settings, s3_bucket, 3, "csv")
    types = {"id": "string", "s": "enum"}
    ours = _fetched(h2o_cloud, s3_settings, resolved, "csv", "t_fetched_csv", monkeypatch, types)
    cluster = s3_source.import_frame(h2o_cloud, resolved, "csv", "t_cluster_csv", types)
    _assert_same_frame(h2o_cloud, ours, cluster, 5)


@pytest.mark.parametrize(("fmt", "days", "value", "needle"), [
    ("parquet", [pa.table({"x": [1.0], "s": ["a"]}), pa.table({"x": [2.0]})], "dt=2013-02-02/part-0.parquet",
     "lacks ['s']"),
    ("parquet", [pa.table({"x": [1, 2], "s": ["a", "b"]}), pa.table({"x": [3.0], "s": ["c"]}),
                 pa.table({"x": ["four"], "s": ["d"]})], "dt=2013-02-03/part-0.parquet", "do not combine"),
    ("parquet", [pa.table({"x": [1.0]}), b"x\n2.0\n"], "dt=2013-02-02/part-0.parquet", "not a readable Parquet"),
    ("csv", [b"x,s\n1,a\n", b"s,x\nb,2\n"], "dt=2013-02-02/part-0.csv", "has the header 's,x'"),
], ids=["missing-column", "types-do-not-combine", "not-parquet", "csv-header"])
def test_client_fetch_names_the_file_and_leaves_nothing(h2o_cloud, s3_settings, s3_bucket, fmt, days, value, needle):
    client = s3_settings.client()
    write_days(client, f"s3://{s3_bucket}/data", days, fmt)
    resolved = s3_source.resolve(client, S3SourceConfig(uri=f"s3://{s3_bucket}/data", format=fmt),
                                 date(2013, 2, 1), date(2013, 2, 1 + len(days)))
    before = _keys(h2o_cloud)
    with pytest.raises(InputDataError) as err:
        s3_source.import_frame(h2o_cloud, resolved, fmt, "t_fetch_fails", client=client, client_fetch_max_bytes=1 << 20)
    assert err.value.field == "source.s3.uri" and err.value.value.endswith(value)
    assert needle in str(err.value) and "Fix:" in str(err.value)
    assert _keys(h2o_cloud) == before


def test_resolve_lists_only_up_to_the_interval_end(s3_settings, s3_bucket, monkeypatch):
    """A window early in a long history stops listing after the page that passes its end."""
    client = s3_settings.client()
    for day in range(1, 10):
        for part in range(2):
            write_day(client, f"s3://{s3_bucket}/data", date(2013, 2, day), b"x", part=part)
    s3.write_bytes(client, f"s3://{s3_bucket}/data/dt=2013-02-03/_SUCCESS", b"")
    calls = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(kw["params"]))
    monkeypatch.setattr(s3_source, "LIST_PAGE", 3)
    resolved = s3_source.resolve(client, S3SourceConfig(uri=f"s3://{s3_bucket}/data"), date(2013, 2, 2),
                                 date(2013, 2, 4))
    assert [u.split("/data/")[1] for u in resolved.files] == [
        "dt=2013-02-02/part-0.parquet", "dt=2013-02-02/part-1.parquet",
        "dt=2013-02-03/part-0.parquet", "dt=2013-02-03/part-1.parquet"]
    assert resolved.days_found == ("2013-02-02", "2013-02-03") and resolved.total_bytes == 4
    assert len(calls) == 2  # 3 + 3 keys reach dt=2013-02-04; the 12 keys after it are never listed


def _fetch_dirs() -> set[str]:
    import tempfile
    from pathlib import Path

    return {p.name for p in Path(tempfile.gettempdir()).glob("h2o-s3-fetch-*")}


def test_client_fetch_uploads_only_the_columns_asked_for(h2o_cloud, s3_settings, s3_bucket, monkeypatch):
    write_days(s3_settings.client(), f"s3://{s3_bucket}/data", PARQUET_DAYS[:2])
    frame = s3_source.import_frame(h2o_cloud, _resolve(s3_settings, s3_bucket, 2), "parquet", "t_projected",
                                   client=s3_settings.client(), client_fetch_max_bytes=1 << 20, columns=["f", "x"])
    try:
        assert frame.columns == ["f", "x"] and frame.nrows == 40
    finally:
        h2o_cloud.remove(frame)
    with pytest.raises(InputDataError) as err:
        s3_source.import_frame(h2o_cloud, _resolve(s3_settings, s3_bucket, 2), "parquet", "t_projected",
                               client=s3_settings.client(), client_fetch_max_bytes=1 << 20, columns=["x", "nope"])
    assert err.value.value.endswith("dt=2013-02-01/part-0.parquet") and "['nope']" in str(err.value)
    assert "its columns: x, s, f, b, t, d, c" in str(err.value)


def test_nanosecond_timestamps_are_left_to_the_nodes(h2o_cloud, s3_settings, s3_bucket, monkeypatch):
    """pyarrow would write them back as INT64 nanoseconds, which H2O reads as numbers: the nodes read the files."""
    days = [pa.table({"t": pa.array([1_356_998_400_000_000_000, None], pa.timestamp("ns")), "x": [1.0, 2.0]}),
            pa.table({"t": pa.array([1_357_084_800_000_000_000, 1_357_171_200_000_000_000], pa.timestamp("ns")),
                      "x": [3.0, 4.0]})]
    assert not s3_source.uploadable(days[0].schema) and s3_source.uploadable(PARQUET_DAYS[0].schema)
    write_days(s3_settings.client(), f"s3://{s3_bucket}/data", days)
    resolved = _resolve(s3_settings, s3_bucket, 2)
    ours = _fetched(h2o_cloud, s3_settings, resolved, "parquet", "t_ns_fetched", monkeypatch)
    nodes = s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_ns_nodes")
    _assert_same_frame(h2o_cloud, ours, nodes, 4)


def test_a_failed_upload_parse_leaves_no_key_and_no_file(h2o_cloud, s3_settings, s3_bucket, monkeypatch):
    """The parse is made to fail (injected): the raw upload and the temporary file are gone."""
    write_days(s3_settings.client(), f"s3://{s3_bucket}/data", PARQUET_DAYS[:1])
    before, dirs = _keys(h2o_cloud), _fetch_dirs()

    def failing_parse(*args, **kwargs):
        raise RuntimeError("parse failed (injected)")

    monkeypatch.setattr(h2o_cloud, "parse_raw", failing_parse)
    with pytest.raises(RuntimeError, match="injected"):
        s3_source.import_frame(h2o_cloud, _resolve(s3_settings, s3_bucket, 1), "parquet", "t_parse_fails",
                               client=s3_settings.client(), client_fetch_max_bytes=1 << 20)
    assert _keys(h2o_cloud) == before and _fetch_dirs() == dirs


def test_an_object_gone_since_the_listing_is_named(h2o_cloud, s3_settings, s3_bucket):
    client = s3_settings.client()
    write_days(client, f"s3://{s3_bucket}/data", PARQUET_DAYS[:2])
    resolved = _resolve(s3_settings, s3_bucket, 2)
    client.delete_object(Bucket=s3_bucket, Key="data/dt=2013-02-02/part-0.parquet")
    dirs = _fetch_dirs()
    with pytest.raises(SourceNotFoundError) as err:
        s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_gone", client=client, client_fetch_max_bytes=1 << 20)
    assert err.value.field == "source.s3.uri" and err.value.value.endswith("dt=2013-02-02/part-0.parquet")
    assert "NoSuchKey" in str(err.value) and "Fix:" in str(err.value) and _fetch_dirs() == dirs


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_files_without_rows_are_an_error_naming_the_interval(h2o_cloud, s3_settings, s3_bucket, fmt):
    client = s3_settings.client()
    empty = pa.table({"x": pa.array([], pa.float64())})
    write_days(client, f"s3://{s3_bucket}/data", [empty if fmt == "parquet" else b"x\n"] * 2, fmt)
    before = _keys(h2o_cloud)
    with pytest.raises(InputDataError) as err:
        s3_source.import_frame(h2o_cloud, _resolve(s3_settings, s3_bucket, 2, fmt), fmt, "t_empty", client=client,
                               client_fetch_max_bytes=1 << 20)
    assert err.value.field == "interval" and "hold no rows" in str(err.value)
    assert _keys(h2o_cloud) == before


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("max_fetch", [1 << 20, 0], ids=["fetched", "nodes-read"])
def test_missing_strings_stay_missing_on_import(h2o_cloud, s3_settings, s3_bucket, fmt, max_fetch):
    """No pandas DataFrame is ever turned into an H2OFrame (pandas 3 writes missing strings as "nan"):
    the cluster parses the files (downloaded and uploaded, or read by the nodes), and a missing
    category stays NA, not a level."""
    table = pa.table({"x": [0.5, 1.5, None, 2.5], "k": [1, 2, 3, None], "c": ["a", None, "b", None],
                      "y": [1.0, 2.0, 3.0, 4.0]})
    write_day(s3_settings.client(), f"s3://{s3_bucket}/data", date(2013, 2, 3), table, fmt)
    cfg = linear_pipeline({"column": "y", "problem": "regression"}, name="missing-strings",
                          registry_uri=f"s3://{s3_bucket}/models/missing-strings",
                          training={"seed": 7, "validation_split": 0.25, "nfolds": 0, "algorithms": [{"algo": "glm"}]},
                          source={"kind": "s3", "training_window_days": 2,
                                  "s3": {"uri": f"s3://{s3_bucket}/data", "format": fmt, "client_fetch_max_bytes": max_fetch}})
    day = datetime(2013, 2, 4).date()
    frame, _ = ingest.import_interval(h2o_cloud, cfg, "train", day, day, s3=s3_settings)
    prepared = frames.prepare(frame, cfg, source=fmt)
    c = prepared.frame["c"]
    assert c.isfactor()[0] and sorted(c.levels()[0]) == ["a", "b"]
    assert int(c.isna().sum()) == 2
    assert int(prepared.frame["x"].isna().sum()) == 1 and int(prepared.frame["k"].isna().sum()) == 1
