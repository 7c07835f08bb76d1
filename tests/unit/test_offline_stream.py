"""The offline engine's streamed data path without a JVM: the scorer's input text, the input written
batch by batch across files and periods, the output handed back by rows."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from h2o_tasks import offline_stream, predictions
from h2o_tasks.errors import InputDataError

FEATURES = [{"name": "flight", "type": "enum", "domain": ["1545", "77", "True"]},
            {"name": "distance", "type": "real", "domain": None}]


def text(values, kind="enum"):
    return offline_stream.feature_text(pa.array(values), kind).to_pylist()


def test_whole_floats_of_a_categorical_are_its_integer_levels_per_value():
    assert text([1545.0, math.nan, None, 77.0]) == ["1545", None, None, "77"]
    # a fraction is written as such, and no longer turns the column's whole numbers into "1545.0"
    assert text([1.5, 1545.0]) == ["1.5", "1545"]
    assert text([1e300]) == ["1e+300"]  # beyond 2**53 a double is no integer text
    assert text([True, False, None]) == ["True", "False", None]
    assert text([7, None]) == ["7", None]  # integers become their text
    assert text(pa.array(["a", "b", "a"]).dictionary_encode()) == ["a", "b", "a"]


def test_numeric_features_are_doubles_and_nan_is_na():
    assert text([1.5, math.nan], "real") == [1.5, None]
    assert offline_stream.feature_text(pa.array([3, None]), "int").type == pa.float64()
    assert offline_stream.feature_text(pa.array([None, None]), "real").type == pa.float64()  # an empty column
    assert text(["N/A", "2"], "real") == ["N/A", "2"]  # text stays text: the scorer reads it as PredictCsv does


def test_files_that_typed_a_column_differently_make_one_input(tmp_path):
    """A column empty in one day's file (null), whole in another (int64), fractional in a third."""
    days = {"d1": [pa.table({"flight": pa.array([None], pa.null()), "distance": pa.array([None], pa.null())})],
            "d2": [pa.table({"flight": [77], "distance": [3]})],
            "d3": [pa.table({"flight": ["77"], "distance": [2.5]})]}
    written = offline_stream.write_scorer_input(write_days(tmp_path, days), "parquet", FEATURES, "v1",
                                                tmp_path / "in.csv")
    assert (tmp_path / "in.csv").read_text().splitlines() == ["flight,distance", ",", "77,3", "77,2.5"]
    assert written.rows == 3


def test_values_are_quoted_only_in_a_batch_that_needs_it_and_backslashes_survive_opencsv(tmp_path):
    days = {"d1": [pa.table({"flight": ["a\\b"], "distance": [1.0]})],
            "d2": [pa.table({"flight": ['x,"y'], "distance": [2.0]})]}
    offline_stream.write_scorer_input(write_days(tmp_path, days), "parquet", FEATURES, "v1", tmp_path / "in.csv")
    # opencsv reads \\ as one backslash; a lone one would escape the quote after it and join two records
    assert (tmp_path / "in.csv").read_text().splitlines() == ["flight,distance", "a\\\\b,1", '"x,""y",2']


def test_rows_are_counted_as_arrow_reads_them(tmp_path):
    (tmp_path / "o.csv").write_text('predict,p0\n"a\nb",0.5\nc,0.25\n')
    assert offline_stream.count_rows(tmp_path / "o.csv") == 2


def write_days(tmp_path: Path, days: dict[str, list[pa.Table]]) -> list[offline_stream.LocalPeriod]:
    periods = []
    for day, tables in days.items():
        paths = []
        for i, table in enumerate(tables):
            path = tmp_path / f"{day}-{i}.parquet"
            pq.write_table(table, path, row_group_size=3)  # several batches per file
            paths.append(path)
        periods.append(offline_stream.LocalPeriod(day, paths))
    return periods


def test_the_input_is_every_period_in_order_with_rows_counted_and_unseen_levels(tmp_path, monkeypatch):
    monkeypatch.setattr(offline_stream, "BATCH_ROWS", 2)
    a = pa.table({"flight": [1545.0, 99.0, None, 77.0, 5.0], "distance": [1.0, 2.0, 3.0, 4.0, 5.0], "x": [0] * 5})
    b = pa.table({"flight": [77.0], "distance": [float("nan")], "x": [1]})
    periods = write_days(tmp_path, {"d1": [a, b], "d2": [b]})
    written = offline_stream.write_scorer_input(periods, "parquet", FEATURES, "v1", tmp_path / "in.csv")
    assert [p.rows for p in written.periods] == [6, 1] and written.rows == 7
    assert written.unseen == {"flight": 2}  # 99 and 5; NA is not a level
    lines = (tmp_path / "in.csv").read_text().splitlines()
    assert lines[0] == "flight,distance"  # no quote in the file: the scorer may cut it into ranges
    assert lines[1:] == ["1545,1", "99,2", ",3", "77,4", "5,5", "77,", "77,"]


def test_a_file_whose_feature_cannot_take_the_first_files_type_is_named(tmp_path):
    a = pa.table({"flight": ["77"], "distance": [1.0]})
    b = pa.table({"flight": ["77"], "distance": ["far"]})
    periods = write_days(tmp_path, {"d1": [a], "d2": [b]})
    with pytest.raises(InputDataError, match=r"d2-0\.parquet"):
        offline_stream.write_scorer_input(periods, "parquet", FEATURES, "v1", tmp_path / "in.csv")


def test_a_missing_feature_is_named(tmp_path):
    periods = write_days(tmp_path, {"d1": [pa.table({"flight": ["77"]})]})
    with pytest.raises(InputDataError, match="distance"):
        offline_stream.write_scorer_input(periods, "parquet", FEATURES, "v1", tmp_path / "in.csv")


def test_predictions_are_handed_out_as_lines_across_blocks_and_the_rest_is_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(offline_stream, "READ_BLOCK", 64)  # many blocks
    out = tmp_path / "out.csv"
    lines = [f'{i},"label, {i}",{i / 10!r},1.0E-4' for i in range(40)]
    out.write_text("predict,p0\n" + "".join(f"{line}\n" for line in lines))
    stream = offline_stream.PredictionLines(out)
    first, second = stream.take(3), stream.take(30)
    assert first.to_pylist() == lines[:3]  # quotes, commas and Java's exponents as written
    assert second.to_pylist() == lines[3:33]
    assert stream.left() == 7


def test_a_period_is_joined_to_its_predictions_by_position_as_text_and_a_short_output_is_an_error(tmp_path):
    table = pa.table({"id": [10, 11, None, 13], "tail": ['N1"2', "a,b", None, "N4\nx"],
                      "x": [1.5, None, math.nan, 2.0], "flight": ["77"] * 4, "distance": [1.0] * 4})
    periods = write_days(tmp_path, {"d1": [table]})
    out = tmp_path / "out.csv"
    scored = ["0,0.5,0.5", "1,1.0E-4,0.9999", "0,NA,NA", "1,0.0,1.0"]  # the scorer's (Java's) text; NA is missing
    out.write_text("predict,p0,p1\n" + "".join(f"{line}\n" for line in scored))
    ids = [("id", "BIGINT"), ("tail", "STRING"), ("x", "DOUBLE")]
    names = ["id", "tail", "x", "predict", "p0", "p1"]
    rows, nothing = offline_stream.join_period(periods[0], "parquet", ids, offline_stream.PredictionLines(out), names,
                                               tmp_path / "part.csv")
    assert (rows, nothing) == (4, None)
    text = (tmp_path / "part.csv").read_text()
    assert text == ('"id","tail","x","predict","p0","p1"\n10,"N1""2",1.5,0,0.5,0.5\n11,"a,b",,1,1.0E-4,0.9999\n'
                    ',,nan,0,NA,NA\n13,"N4\nx",2,1,0.0,1.0\n')
    # the ids as Arrow's CSV writer writes them
    import pyarrow.csv as pcsv

    expected = pa.BufferOutputStream()
    pcsv.write_csv(table.select(["id", "tail", "x"]), expected, pcsv.WriteOptions(include_header=False))
    assert expected.getvalue().to_pybytes().decode() == '10,"N1""2",1.5\n11,"a,b",\n,,nan\n13,"N4\nx",2\n'
    # for a Hive table, the typed rows: the ids as read (a null and a NaN kept), the predictions parsed from the text
    columns = [*ids, ("predict", "STRING"), ("p0", "DOUBLE"), ("p1", "DOUBLE")]
    rows, typed = offline_stream.join_period(periods[0], "parquet", ids, offline_stream.PredictionLines(out), names,
                                             tmp_path / "part2.csv", typed=predictions.arrow_schema(columns))
    assert rows == 4 and (tmp_path / "part2.csv").read_text() == text
    got = typed.to_pydict()
    assert got["tail"] == ['N1"2', "a,b", None, "N4\nx"] and got["id"] == [10, 11, None, 13]
    assert got["x"][1] is None and math.isnan(got["x"][2])
    assert got["predict"] == ["0", "1", "0", "1"] and got["p0"] == [0.5, 1e-4, None, 0.0]
    # an S3 reader of the part (a line end inside a quoted id included) gets the same rows
    back = predictions.read_part(tmp_path / "part.csv", columns)
    assert back.column("tail").to_pylist() == ['N1"2', "a,b", "", "N4\nx"] and back.column("p0").to_pylist() == got["p0"]
    out.write_text("predict,p0,p1\n0,0.5,0.5\n")
    with pytest.raises(InputDataError, match="end before"):
        offline_stream.join_period(periods[0], "parquet", ids, offline_stream.PredictionLines(out), names,
                                   tmp_path / "part.csv")


def test_a_period_without_rows_is_a_part_with_its_header_alone(tmp_path):
    """A day whose file holds no rows (no flights that day) is committed as an empty partition."""
    empty = pa.table({"id": pa.array([], pa.int64()), "flight": pa.array([], pa.string()),
                      "distance": pa.array([], pa.float64())})
    full = pa.table({"id": [7], "flight": ["77"], "distance": [1.0]})
    periods = write_days(tmp_path, {"d1": [empty], "d2": [full]})
    written = offline_stream.write_scorer_input(periods, "parquet", FEATURES, "v1", tmp_path / "in.csv")
    assert [p.rows for p in written.periods] == [0, 1]
    out = tmp_path / "out.csv"
    out.write_text("predict\n0.5\n")
    stream = offline_stream.PredictionLines(out)
    args = ("parquet", [("id", "BIGINT")], stream, ["id", "predict"])
    schema = predictions.arrow_schema([("id", "BIGINT"), ("predict", "DOUBLE")])
    rows, empty = offline_stream.join_period(periods[0], *args, tmp_path / "p0.csv", typed=schema)
    assert rows == 0 and empty.num_rows == 0 and empty.schema == schema
    assert (tmp_path / "p0.csv").read_text() == '"id","predict"\n'
    assert predictions.read_part(tmp_path / "p0.csv", [("id", "BIGINT"), ("predict", "DOUBLE")]).num_rows == 0
    assert offline_stream.join_period(periods[1], *args, tmp_path / "p1.csv") == (1, None)
    assert (tmp_path / "p1.csv").read_text() == '"id","predict"\n7,0.5\n'
    assert stream.left() == 0


_ARENAS = """
import ctypes, sys, threading
from h2o_tasks import offline_stream
if sys.argv[1] == "limit":
    assert offline_stream.limit_malloc_arenas()
together = threading.Barrier(6)
def work():
    blocks = [bytearray(10_000) for _ in range(8)]  # from malloc (not Python's small-object pool, nor mmap)
    together.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""


@pytest.mark.parametrize(("mode", "most"), [("limit", 2), ("default", None)])
def test_the_task_caps_the_malloc_arenas_its_threads_take(mode, most):
    """Six threads allocating at once take an arena each (glibc's own count, ``malloc_stats``), two with the cap."""
    import os
    import re
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", _ARENAS, mode], env=env, capture_output=True, text=True, check=True)
    arenas = len(re.findall(r"^Arena \d+:", out.stderr, re.MULTILINE))
    if most:
        assert 1 <= arenas <= most, out.stderr
    else:
        assert arenas >= 6, out.stderr  # the control: without the cap each thread had its own


@pytest.mark.parametrize(("name", "value"), [("MALLOC_ARENA_MAX", "4"), ("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")])
def test_an_arena_limit_set_in_the_environment_is_left_alone(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert offline_stream.limit_malloc_arenas() is False


def test_arrow_allocates_from_jemalloc_in_the_block_and_its_pool_comes_back():
    before = pa.default_memory_pool()
    with offline_stream.arrow_allocator():
        pool = pa.default_memory_pool()
        assert pool.backend_name == "jemalloc"
        held = pool.bytes_allocated()
        buffer = pa.allocate_buffer(1 << 20)  # the arrays the stream makes come from it
        assert pool.bytes_allocated() >= held + (1 << 20)
        del buffer
    assert pa.default_memory_pool().backend_name == before.backend_name


def test_arrow_without_jemalloc_allocates_from_the_c_library(monkeypatch):
    def missing(*_):
        raise pa.ArrowNotImplementedError("this Arrow was built without jemalloc")

    monkeypatch.setattr(pa, "jemalloc_set_decay_ms", missing)
    before = pa.default_memory_pool()
    with offline_stream.arrow_allocator():
        assert pa.default_memory_pool().backend_name == "system"
    assert pa.default_memory_pool().backend_name == before.backend_name
