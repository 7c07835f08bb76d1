"""A local TCP port that reaches a pod's port through the API server (``pods/portforward``).

Like ``kubectl port-forward``: listens on ``127.0.0.1:<free port>`` and, for every accepted
connection, opens one websocket to the pod's ``portforward`` subresource (the Kubernetes
client's ``kubernetes.stream.portforward``, subprotocol ``v4.channel.k8s.io``) and relays the
bytes both ways. The URL is only valid in the process that opened it: it never goes to XCom.

``kubernetes.stream.portforward`` swaps ``request`` on the ApiClient it is given while it
connects, so a forward uses its own ``ApiClient`` (same configuration) and opens one websocket
at a time: REST calls on the caller's client, from other threads, stay untouched.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import select
import socket
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from h2o_tasks.errors import ClusterError

log = logging.getLogger(__name__)

_OPEN: weakref.WeakSet[PortForward] = weakref.WeakSet()


class PortForwardError(ClusterError):
    """The API server refused or broke a port-forward (``reason``: ``PortForwardForbidden``, ...)."""


def _explain(exc: Exception, namespace: str, pod: str, port: int) -> PortForwardError:
    """A clear error from the client's ``ApiException(status=0, reason='Handshake status 403 ...')``
    (kubernetes 36 may hide it behind an ``AttributeError`` raised while handling it)."""
    chain, e = [], exc
    while e is not None and len(chain) < 5:
        chain.append(str(getattr(e, "reason", "") or e))
        e = e.__cause__ or e.__context__
    text = next((t for t in chain if "Handshake status" in t), chain[0])
    m = re.search(r"Handshake status (\d{3})", text)
    status = int(m.group(1)) if m else getattr(exc, "status", 0) or 0
    where = f"port-forward to pod {namespace}/{pod}:{port}"
    body = text.split(" -+-+- ")[-1]
    said = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', body)
    detail = (said.group(1).replace('\\"', '"') if said else body)[:300]
    if status in (401, 403):
        return PortForwardError(
            f"{where} forbidden ({status}: {detail}): the Kubernetes identity may not use pods/portforward in namespace "
            f"{namespace!r}. Grant verbs create and get on resource pods/portforward (k8s/rbac.yaml), or use "
            f"cluster.endpoint_mode service/pod-ip", reason="PortForwardForbidden")
    if status == 404:
        return PortForwardError(f"{where}: the pod does not exist (404)", retryable=True, reason="PodNotFound")
    return PortForwardError(f"{where} failed ({status or 'no HTTP status'}): {detail}", retryable=True,
                            reason="PortForwardFailed")


@dataclass(eq=False)
class PortForward:
    """Forward ``127.0.0.1:local_port`` to ``namespace/pod:remote_port``; ``start()``, then ``close()``.

    :param api_client: a configured ``kubernetes.client.ApiClient`` (its configuration is reused).
    :param namespace: the pod's namespace.
    :param pod: the pod's name.
    :param remote_port: the pod's port (H2O's REST API: 54321).
    """

    api_client: Any
    namespace: str
    pod: str
    remote_port: int = 54321
    host: str = "127.0.0.1"
    local_port: int = 0
    connections: int = 0  # accepted so far
    _listener: socket.socket | None = field(default=None, repr=False)
    _own_client: Any = field(default=None, repr=False)
    _open_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _live: set[Any] = field(default_factory=set, repr=False)
    _closed: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.local_port}"

    @property
    def active(self) -> bool:
        return self._listener is not None and not self._closed.is_set()

    def _open(self) -> Any:
        """One websocket to the pod's port; returns the client's ``PortForward``."""
        from kubernetes import client
        from kubernetes.stream import portforward

        with self._open_lock:
            if self._own_client is None:
                self._own_client = client.ApiClient(self.api_client.configuration)
            core = client.CoreV1Api(self._own_client)
            try:
                return portforward(core.connect_get_namespaced_pod_portforward, self.pod, self.namespace,
                                   ports=str(self.remote_port))
            except Exception as exc:
                raise _explain(exc, self.namespace, self.pod, self.remote_port) from exc

    def start(self) -> PortForward:
        """Check that the API server accepts the forward (fails clearly if not), then listen."""
        self._open().close()  # a 403 surfaces here, not as a refused HTTP connection later
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((self.host, self.local_port))
        lst.listen(16)
        self.local_port = lst.getsockname()[1]
        self._listener = lst
        _OPEN.add(self)
        threading.Thread(target=self._accept, name=f"port-forward {self.pod}:{self.remote_port}", daemon=True).start()
        log.info("Port-forward %s -> pod %s/%s:%d", self.url, self.namespace, self.pod, self.remote_port)
        return self

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()  # type: ignore[union-attr]
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._relay, args=(conn,), name=f"port-forward {self.pod} #{self.connections}",
                             daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        """Copy bytes between one local connection and its own websocket until either side ends."""
        try:
            pf = self._open()
        except PortForwardError as exc:
            log.warning("%s", exc)
            conn.close()
            return
        remote = pf.socket(self.remote_port)
        self._live.update((conn, remote))
        try:
            peers = {conn.fileno(): remote, remote.fileno(): conn}
            while not self._closed.is_set():
                ready, _, _ = select.select(list(peers), [], [], 1.0)
                for fd in ready:
                    src = conn if fd == conn.fileno() else remote
                    data = src.recv(1 << 16)
                    if not data:
                        return
                    peers[fd].sendall(data)
        except OSError:
            return
        finally:
            err = pf.error(self.remote_port)
            if err:
                log.warning("port-forward to %s/%s:%d: %s", self.namespace, self.pod, self.remote_port, err)
            self._live.discard(conn)
            self._live.discard(remote)
            for s in (conn, remote):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        """Stop listening and end every relayed connection (their websockets close with them)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for s in list(self._live):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if self._own_client is not None:
            with contextlib.suppress(Exception):
                self._own_client.close()
        _OPEN.discard(self)

    def __enter__(self) -> PortForward:
        return self.start() if self._listener is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for pf in list(_OPEN):
        pf.close()
