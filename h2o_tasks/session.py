"""A connection to a running H2O cloud, with S3 credentials handed over at run time."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from h2o_tasks.cluster.login import Login
from h2o_tasks.s3 import S3Settings

# h2o-py's job poller (its progress bar) asks for a job's status every 0.5-1.5 s and returns
# only once its modelled progress has caught up with the finished job: up to ~1.5 s lost on every
# parse, model build, predict and export. A task waits for many jobs; poll every 20-250 ms.
JOB_POLL_MIN_S = 0.02
JOB_POLL_MAX_S = 0.25
JOB_FINISH_DELAY_S = 0.01


def prompt_job_polling() -> None:
    """Make the H2O client notice finished jobs within ``JOB_POLL_MAX_S`` (a /3/Jobs call is cheap)."""
    from h2o.utils.progressbar import ProgressBar

    ProgressBar.MIN_PROGRESS_CHECK_INTERVAL = JOB_POLL_MIN_S
    ProgressBar.MAX_PROGRESS_CHECK_INTERVAL = JOB_POLL_MAX_S
    ProgressBar.FINISH_DELAY = JOB_FINISH_DELAY_S


def connect(url: str, s3: S3Settings | None = None, verbose: bool = False, login: Login | None = None) -> Any:
    """Connect the H2O client to ``url`` with the cluster's ``login`` and give the cloud the S3 credentials
    (never logged)."""
    import h2o

    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        conn = h2o.connect(url=url, verbose=verbose, strict_version_check=True,
                           auth=login.pair if login is not None else None, verify_ssl_certificates=True,
                           cacert=login.ca_file if login is not None and login.ca_file else None)
    prompt_job_polling()
    if s3 is not None and s3.access_key:
        set_credentials(s3)
    return conn


def disconnect(conn: Any) -> None:
    """Close ``conn`` (what :func:`connect` returned) and its session with the cloud, if still open: the
    session's temporaries go with it, and h2o's exit handler has nothing left to do (it would ask a
    deleted cloud for a session). A cloud that is gone costs the client's 1 s close timeout at most;
    nothing is printed either way."""
    if conn is not None and conn.connected:
        with contextlib.redirect_stdout(io.StringIO()):
            conn.close()


def set_credentials(s3: S3Settings) -> None:
    """Give the connected cloud S3 credentials (a session token with temporary ones); never printed."""
    from h2o.persist import set_s3_credentials

    with contextlib.redirect_stdout(io.StringIO()):
        set_s3_credentials(s3.access_key, s3.secret_key, s3.session_token or None)


def h2o_version() -> str:
    import h2o

    return h2o.__version__
