"""Files the task uploads to the cluster (``POST /3/PostFile``) and has it parse as one frame."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from h2o_tasks import scratch


def parse_upload(h2o: Any, path: Path, destination: str, *, header: int = 0,
                 column_types: dict[str, str] | None = None, na_strings: list[str] | None = None) -> Any:
    """Upload ``path`` and parse it as ``destination``; a failed parse leaves neither the raw upload nor a partial frame.

    :param header: 1 when the first line is a header (CSV), 0 to let H2O decide (Parquet).
    """
    raw = h2o.api("POST /3/PostFile", filename=str(path))["destination_frame"]
    try:  # h2o.parse_raw sets the setup's check_header from its own argument
        setup = h2o.parse_setup(raw, destination, header=header, column_types=column_types or None,
                                na_strings=na_strings)
        return h2o.parse_raw(setup, id=destination, first_line_is_header=header)
    except Exception:
        for key in (destination, raw):
            with contextlib.suppress(Exception):  # the failed parse may not have created it
                h2o.remove(key)
        raise


def upload_table(h2o: Any, table: Any, col_types: dict[str, str], dest: str) -> Any:
    """Upload a small Arrow table to the cluster as a frame (one CSV, typed as declared)."""
    import pyarrow.csv as pcsv

    with scratch.directory("h2o-upload-") as tmp:
        path = Path(tmp) / f"{dest}.csv"
        pcsv.write_csv(table, path)
        return parse_upload(h2o, path, dest, header=1, column_types=col_types)
