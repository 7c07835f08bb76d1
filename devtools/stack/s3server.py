"""A real S3 API on loopback: the moto server (``moto_server``), one process."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devtools.stack import procs
from h2o_tasks.s3 import S3Settings

# Fixed, non-secret credentials of the local server (moto accepts any).
LOCAL_ACCESS_KEY = "h2o-airflow-local"
LOCAL_SECRET_KEY = "h2o-airflow-local-secret"


@dataclass
class S3Server:
    process: procs.ServerProcess
    settings: S3Settings

    def stop(self) -> None:
        self.process.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/moto-api/", timeout=1) as resp:
            return resp.status < 500
    except Exception:
        return False


def start(workdir: Path, port: int = 0, host: str = "127.0.0.1") -> S3Server:
    """Start ``moto_server`` on ``host`` (loopback, or an address of a test network namespace)."""
    port = port or procs.free_port(host)
    url = f"http://{host}:{port}"
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = procs.start("moto_server", [exe, "-H", host, "-p", str(port)], Path(workdir) / "moto.log",
                       ready=lambda: _answers(url), timeout=60)
    return S3Server(proc, S3Settings(endpoint_url=url, access_key=LOCAL_ACCESS_KEY, secret_key=LOCAL_SECRET_KEY))
