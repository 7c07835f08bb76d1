"""The prepared training frame's summary (h2o_tasks.frames.PreparedFrame), without a cluster."""

from __future__ import annotations

import json

from h2o_tasks.frames import PreparedFrame


class _Uncopyable:
    """Stands for an H2O frame: a handle on a remote object that must never be copied."""

    def __deepcopy__(self, memo):
        raise AssertionError("the frame was deep-copied")


def test_prepared_frame_to_dict_does_not_copy_the_frame():
    counts = {"0": 7, "1": 3}
    prepared = PreparedFrame(_Uncopyable(), rows_in=12, rows_dropped_no_label=2, rows_out=10, class_counts=counts)
    out = prepared.to_dict()
    assert out == {"rows_in": 12, "rows_dropped_no_label": 2, "rows_out": 10, "class_counts": {"0": 7, "1": 3}}
    assert out["class_counts"] is not counts  # the caller may change it freely
    json.dumps(out)
