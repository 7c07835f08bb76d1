"""A connection to a running H2O cloud, with S3 credentials handed over at run time."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from h2o_tasks.s3 import S3Settings


def connect(url: str, s3: S3Settings | None = None, verbose: bool = False) -> Any:
    """Connect the H2O client to ``url`` and give the cloud the S3 credentials (never logged)."""
    import h2o

    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        conn = h2o.connect(url=url, verbose=verbose, strict_version_check=True)
    if s3 is not None and s3.access_key:
        from h2o.persist import set_s3_credentials

        set_s3_credentials(s3.access_key, s3.secret_key)
    return conn


def h2o_version() -> str:
    import h2o

    return h2o.__version__
