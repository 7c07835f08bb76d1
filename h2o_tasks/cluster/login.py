"""Each cluster's REST login: a random password made at create time, H2O's hash login on every node.

The nodes get only the password's MD5 (Jetty's ``HashLoginService`` file, ``-hash_login
-login_conf``); the clients (hook, readiness, diagnostics) get the password itself from where
the backend keeps it: a file of mode 0600 in a directory of mode 0700 (local backend) or a
Secret owned by the run's objects (Kubernetes). It never goes to XCom, a log or a manifest.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER = "h2o"
REALM_FILE = "realm.properties"
PASSWORD_FILE = "password"


@dataclass(frozen=True)
class Login:
    """A user and password for a cluster's REST API (HTTP basic auth); the password is never in ``repr``."""

    user: str
    password: str = field(repr=False)
    ca_file: str = ""  # an HTTPS cluster's: the PEM of the CA its certificate is verified against

    def ssl_context(self) -> ssl.SSLContext | None:
        """What ``urlopen`` verifies an HTTPS cluster with (None: the system's CAs, or plain HTTP)."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    @classmethod
    def generate(cls) -> Login:
        return cls(USER, secrets.token_urlsafe(24))

    @property
    def pair(self) -> tuple[str, str]:
        """``(user, password)``, as ``h2o.connect(auth=...)`` and ``requests`` take it."""
        return self.user, self.password

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header's value."""
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    @property
    def realm(self) -> str:
        """The nodes' ``-login_conf`` file: the user and the password's MD5, not the password."""
        return f"{self.user}: MD5:{hashlib.md5(self.password.encode()).hexdigest()}\n"


def urlopen(url: str, login: Login | None, timeout: float) -> Any:
    """A GET of ``url`` with the cluster's login, an HTTPS one verified against the cluster's CA."""
    return urllib.request.urlopen(request(url, login), timeout=timeout,
                                  context=login.ssl_context() if login is not None else None)


def request(url: str, login: Login | None) -> urllib.request.Request:
    """A GET of ``url`` carrying ``login`` (a cluster without one: no header)."""
    req = urllib.request.Request(url)
    if login is not None:
        req.add_header("Authorization", login.authorization)
    return req


def write_private(directory: Path, login: Login) -> Path:
    """Keep ``login`` in ``directory`` (made mode 0700): the password and the nodes' hash file, each 0600.
    Returns the hash file's path."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    # each file whole or not at all (a reader never sees half a password); the hash first, so a
    # password that can be read always has its hash beside it
    for name, text in ((REALM_FILE, login.realm), (PASSWORD_FILE, login.password)):
        tmp = directory / f".{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, directory / name)
    return directory / REALM_FILE


def read_private(directory: Path) -> Login | None:
    """The login kept in ``directory`` by :func:`write_private`, or None."""
    try:
        return Login(USER, (directory / PASSWORD_FILE).read_text())
    except OSError:
        return None


def hint(info: Any) -> str:
    """Where a user reads the password of the cluster ``info`` (a ``ClusterInfo``): never the password."""
    if info.backend == "local":
        return f"user {USER}, password: cat {Path(info.state_dir or '.') / 'clusters' / info.name / 'login' / PASSWORD_FILE}"
    return (f"user {USER}, password: kubectl -n {info.namespace} get secret {info.name}-login "
            f"-o jsonpath='{{.data.{PASSWORD_FILE}}}' | base64 -d")


def ca_file(pem: bytes) -> str:
    """A file holding the CA certificate ``pem`` (public: named by its digest in the temporary directory,
    written once whole, shared by every process of this user), for clients that take a path."""
    import tempfile

    directory = Path(tempfile.gettempdir()) / f"h2o-airflow-ca-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{hashlib.sha256(pem).hexdigest()[:32]}.crt"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(pem)
        os.replace(tmp, path)
    return str(path)
