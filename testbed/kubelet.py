"""The test bed's kubelet server: just enough of it for ``pods/portforward``, ``pods/log`` and ``/healthz``.

``pods/log`` is proxied by the API server to ``/containerLogs/<ns>/<pod>/<container>`` (query
``tailLines``, ``previous``): the container's output as the node agent wrote it (one file per pod,
appended across restarts, so ``previous`` returns the same file).

kube-apiserver v1.37 proxies a client's port-forward websocket (subprotocol
``v4.channel.k8s.io``, as the Kubernetes Python client asks) unchanged to the node's kubelet at
``https://<Node InternalIP>:<status.daemonEndpoints.kubeletEndpoint.Port>/portForward/<ns>/<pod>?port=N``.
Only a ``SPDY/3.1+portforward.k8s.io`` tunnel would be translated to SPDY on the way
(``PortForwardREST.Connect``: ``TranslatingHandler`` picks websocket requests with a tunneling
protocol); this server refuses SPDY with 400.

The protocol is the kubelet's streaming server's (cri-streaming ``portforward/websocket.go`` +
``wsstream``): two channels per requested port, data ``2i`` and error ``2i+1``; the first frame on
each is the channel byte + the port, 2 bytes little-endian; then every binary message is
``[channel] + bytes``. Data is relayed to ``podIP:port`` in the bed's pod network; a refused
connection is reported as text on the error channel. The websocket closes when the pod's side
ends or the client closes.

TLS: a self-signed serving certificate (the API server runs without
``--kubelet-certificate-authority`` and so does not verify it); a client certificate signed by
the cluster CA is required (the API server's ``--kubelet-client-certificate``).
RFC 6455 framing is written out here (no server-side websocket dependency).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import ipaddress
import re
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "v4.channel.k8s.io"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
PATH = re.compile(r"/portForward/([^/]+)/([^/]+)(?:/([^/]+))?/?")
LOGS = re.compile(r"/containerLogs/([^/]+)/([^/]+)/([^/]+)/?")


def write_self_signed(d: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed EC serving certificate for ``ip``: (cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"testbed-kubelet@{ip}")])
    now = _dt.datetime.now(_dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .sign(key, hashes.SHA256()))
    crt, pem = d / "kubelet.crt", d / "kubelet.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


# ----------------------------------------------------------------------------- RFC 6455 (server side)


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")


def frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """One unmasked (server to client) frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x80 | opcode, 127]) + struct.pack("!Q", n)
    return head + payload


@dataclass
class FrameParser:
    """Incremental parser of client frames: ``feed(bytes)`` returns complete ``(opcode, payload)``
    messages (fragments joined; control frames as they come)."""

    buf: bytearray = field(default_factory=bytearray)
    parts: list[bytes] = field(default_factory=list)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            n, pos = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    break
                n, pos = struct.unpack_from("!H", self.buf, 2)[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    break
                n, pos = struct.unpack_from("!Q", self.buf, 2)[0], 10
            mlen = 4 if b1 & 0x80 else 0
            if len(self.buf) < pos + mlen + n:
                break
            mask = bytes(self.buf[pos:pos + mlen])
            payload = bytes(self.buf[pos + mlen:pos + mlen + n])
            del self.buf[:pos + mlen + n]
            if mask:
                payload = _unmask(payload, mask)
            opcode = b0 & 0x0F
            if opcode >= 0x8:  # control frames are never fragmented
                out.append((opcode, payload))
                continue
            self.parts.append(payload)
            if b0 & 0x80:
                out.append((OP_BINARY, b"".join(self.parts)))
                self.parts.clear()
        return out


# ----------------------------------------------------------------------------- port-forward session


def _pending(sock: socket.socket) -> int:
    return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0


@dataclass
class PortForwardSession:
    """One port-forward websocket: per port a TCP connection to the pod, relayed both ways.

    One thread and one ``select`` loop: the TLS socket is never read and written concurrently.
    """

    sock: socket.socket  # an ssl.SSLSocket from the server
    pod: str
    ip: str
    ports: list[int]
    log: Callable[[str], None] = print

    def run(self) -> None:
        send = self.sock.sendall
        for i, port in enumerate(self.ports):
            le = struct.pack("<H", port)
            send(frame(bytes([2 * i]) + le))
            send(frame(bytes([2 * i + 1]) + le))
        conns: dict[int, socket.socket] = {}
        for i, port in enumerate(self.ports):
            try:
                conns[i] = socket.create_connection((self.ip, port), timeout=5)
                conns[i].settimeout(None)
            except OSError as exc:
                msg = f"error forwarding port {port} to pod {self.pod}: dial tcp {self.ip}:{port}: {exc.strerror or exc}"
                self.log(msg)
                send(frame(bytes([2 * i + 1]) + msg.encode()))
        parser = FrameParser()
        index = {c.fileno(): i for i, c in conns.items()}
        try:
            while conns:
                # TLS may hold decrypted bytes the file descriptor no longer shows
                readable = [self.sock] if _pending(self.sock) else select.select([self.sock, *conns.values()], [], [])[0]
                for r in readable:
                    if r is self.sock:
                        data = self.sock.recv(1 << 16)
                        while _pending(self.sock):
                            data += self.sock.recv(_pending(self.sock))
                        if not data:
                            return
                        for opcode, payload in parser.feed(data):
                            if opcode == OP_CLOSE:
                                return
                            if opcode == OP_PING:
                                send(frame(payload, OP_PONG))
                            elif opcode in (OP_BINARY, OP_TEXT) and len(payload) > 1 and payload[0] % 2 == 0:
                                conn = conns.get(payload[0] // 2)
                                if conn is not None:
                                    conn.sendall(payload[1:])
                    else:
                        i = index[r.fileno()]
                        data = r.recv(1 << 16)
                        if data:
                            send(frame(bytes([2 * i]) + data))
                        else:  # the pod's side ended this port
                            conns.pop(i).close()
        except OSError as exc:
            self.log(f"port-forward {self.pod}: {exc!r}")
        finally:
            for c in conns.values():
                c.close()
            with contextlib.suppress(OSError):
                send(frame(struct.pack("!H", 1000), OP_CLOSE))


# ----------------------------------------------------------------------------- HTTP server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    rbufsize = 0  # nothing of the websocket may sit in a read buffer once the upgrade is done
    server: KubeletServer

    def setup(self) -> None:
        self.request.settimeout(30)
        self.request.do_handshake()
        self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log(f"{self.address_string()} {format % args}")

    def _error(self, code: int, message: str) -> None:
        body = message.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return self._error(200, "ok")
        logs = LOGS.fullmatch(url.path)
        if logs:
            return self._logs(logs.group(1), logs.group(2), parse_qs(url.query))
        m = PATH.fullmatch(url.path)
        if not m:
            return self._error(404, f"the test bed kubelet serves /portForward/, /containerLogs/ and /healthz, "
                                    f"not {url.path}")
        return self._port_forward(m.group(1), m.group(2), parse_qs(url.query))

    def _logs(self, namespace: str, pod: str, query: dict[str, list[str]]) -> None:
        path = self.server.log_file_of(namespace, pod) if self.server.log_file_of else None
        if path is None or not path.exists():
            return self._error(404, f"no log of pod {namespace}/{pod} on this node")
        lines = path.read_bytes().splitlines(keepends=True)
        tail = query.get("tailLines", [""])[0]
        if tail.isdigit():
            lines = lines[-int(tail):] if int(tail) else []
        body = b"".join(lines)
        self.server.log(f"logs {namespace}/{pod} {len(body)} bytes")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # SPDY clients POST with Upgrade: SPDY/3.1
        self._error(400, f"upgrade {self.headers.get('Upgrade')!r}: the test bed kubelet speaks only websocket "
                         f"port-forward ({SUBPROTOCOL}), not SPDY")

    def _port_forward(self, namespace: str, pod: str, query: dict[str, list[str]]) -> None:
        if self.headers.get("Upgrade", "").lower() != "websocket":
            return self.do_POST()
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if SUBPROTOCOL not in offered:
            return self._error(400, f"subprotocols {offered}: the test bed kubelet supports only {SUBPROTOCOL}")
        try:
            ports = [int(p) for v in query.get("port", []) for p in v.split(",") if p]
            if not ports or not all(0 < p < 65536 for p in ports):
                raise ValueError
        except ValueError:
            return self._error(400, "query parameter port is required: one or more ports 1-65535")
        ip = self.server.resolve(namespace, pod)
        if not ip:
            return self._error(404, f"pod {namespace}/{pod} does not exist on this node (or has no address yet)")
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", SUBPROTOCOL)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self.server.sessions += 1
        self.server.log(f"port-forward {namespace}/{pod} {ports} -> {ip}")
        PortForwardSession(self.connection, f"{namespace}/{pod}", ip, ports, self.server.log).run()


class KubeletServer(ThreadingHTTPServer):
    """HTTPS on ``host:port`` with client certificates checked against ``client_ca``.

    :param resolve: ``(namespace, pod) -> pod IP`` (empty when the pod is not on this node).
    :param log_file_of: ``(namespace, pod) -> the container's log file`` (None when not on this node).
    """

    daemon_threads = True

    def __init__(self, host: str, port: int, resolve: Callable[[str, str], str], client_ca: str, cert_dir: Path,
                 log_file: Path | None = None, log_file_of: Callable[[str, str], Path | None] | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.resolve = resolve
        self.log_file_of = log_file_of
        self.sessions = 0
        self.log_file = log_file
        crt, key = write_self_signed(cert_dir, host)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
        self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def log(self, line: str) -> None:
        if self.log_file is not None:
            stamp = _dt.datetime.now(_dt.UTC).strftime("%H:%M:%S.%f")[:-3]
            with self.log_file.open("a") as f:
                f.write(f"{stamp} {line}\n")

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        self.log(f"error serving {client_address}: {sys.exc_info()[1]!r}")

    def start(self) -> KubeletServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="testbed-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(10)
