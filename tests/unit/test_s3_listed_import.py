"""When the nodes' import lists a common prefix once, and when each file is imported on its own.

The H2O side (the pattern H2O 3.46 applies, the keys it keeps, the fall-back on other keys) runs on a
real cloud in ``tests/integration/test_s3_source.py``; here a recorder stands in for the ``h2o`` module
to check the choice of call alone.
"""

from __future__ import annotations

import pytest

from h2o_tasks.sources import s3 as s3_source


class Recorder:
    """Records ``lazy_import`` calls; a listed call returns ``listed`` (or raises ``fail``)."""

    def __init__(self, listed: list[str] | None = None, fail: Exception | None = None):
        self.calls: list[tuple[object, object]] = []
        self.listed, self.fail = listed, fail

    def lazy_import(self, path, pattern=None):
        self.calls.append((path, pattern))
        if pattern is None:
            return list(path)
        if self.fail:
            raise self.fail
        return list(self.listed or [])

    def remove(self, key):
        pass


def days(n: int, name: str = "part-0.parquet") -> list[str]:
    return [f"s3://b/src/dt=2013-{1 + i // 28:02d}-{1 + i % 28:02d}/{name}" for i in range(n)]


def test_few_files_or_other_buckets_are_imported_each_alone():
    files = days(s3_source.LISTED_IMPORT_MIN_FILES - 1)
    h2o = Recorder()
    assert s3_source.lazy_import(h2o, files) == files and h2o.calls == [(files, None)]
    two_buckets = [*days(8), "s3://c/src/dt=2013-02-01/part-0.parquet"]
    h2o = Recorder()
    s3_source.lazy_import(h2o, two_buckets)
    assert h2o.calls == [(two_buckets, None)]


def test_a_year_is_listed_once_and_an_over_long_pattern_is_not_sent():
    year = days(365)
    h2o = Recorder(listed=list(reversed(year)))
    assert s3_source.lazy_import(h2o, year) == year  # the files' order, whatever the listing's
    assert len(h2o.calls) == 1 and h2o.calls[0][0] == "s3://b/src/dt=2013-"
    long_names = days(400, "part-" + "x" * 80 + ".parquet")
    h2o = Recorder(listed=long_names)
    s3_source.lazy_import(h2o, long_names)
    assert h2o.calls == [(long_names, None)]


@pytest.mark.parametrize("outcome", ["other keys", "an error"])
def test_a_listing_that_does_not_give_the_files_falls_back_to_each_file(outcome):
    year = days(365)
    h2o = Recorder(listed=year[:-1]) if outcome == "other keys" else Recorder(fail=RuntimeError("413"))
    assert s3_source.lazy_import(h2o, year) == year
    assert [c[1] is None for c in h2o.calls] == [False, True]
