"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
as local processes, for tests only. No kubelet, no container runtime: Nodes are API objects the
test registers (see ``node_manifest``), Pods get scheduled (``spec.nodeName``) but never run.

Binaries come from ``testbed/build.sh`` (cached outside the repo, by version). Usage::

    from testbed import controlplane
    cp = controlplane.start(tmp_dir)        # blocks until every component is healthy
    try:
        ...  # cp.admin_kubeconfig, cp.airflow_kubeconfig, cp.server, ...
    finally:
        cp.stop()
        print(json.dumps({"stopped": cp.stopped}))

Each process runs in its own session, logs to ``<tmp_dir>/logs/<name>.log``, and is stopped by its
own process id (SIGTERM, then SIGKILL). Imports nothing from Airflow or the product.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as _dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
VERSIONS_FILE = HERE / "versions.env"

K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

# No kubelet runs here, so nothing keeps a Node's heartbeat fresh: the node lifecycle controller
# would mark every registered Node NotReady/unreachable after the grace period and taint it.
# It is off, and so is the TaintNodesByCondition admission plugin (it puts a not-ready taint on
# every new Node that only that controller removes), so a Node registered Ready stays Ready.
DEFAULT_CONTROLLERS = "*,-node-lifecycle-controller"
DEFAULT_DISABLED_ADMISSION = "TaintNodesByCondition"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "testbed-admin"
AIRFLOW_USER = "airflow"


class ControlPlaneError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# versions and binaries


def versions() -> dict[str, str]:
    """K8S_VERSION and ETCD_VERSION: testbed/versions.env, overridden by the environment."""
    out: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    for k in ("K8S_VERSION", "ETCD_VERSION"):
        if os.environ.get(k):
            out[k] = os.environ[k]
    return out


def cache_dir() -> Path:
    base = os.environ.get("H2O_AIRFLOW_CACHE") or str(Path.home() / ".cache" / "h2o-airflow")
    return Path(base) / "testbed"


def bin_dirs() -> tuple[Path, Path]:
    """(kubernetes bin dir, etcd bin dir) in the cache, for the pinned versions."""
    v = versions()
    return (
        cache_dir() / f"k8s-{v['K8S_VERSION']}" / "bin",
        cache_dir() / f"etcd-{v['ETCD_VERSION']}" / "bin",
    )


def missing_binaries() -> list[Path]:
    k8s, etcd = bin_dirs()
    wanted = [k8s / c for c in K8S_COMMANDS] + [etcd / "etcd"]
    return [p for p in wanted if not os.access(p, os.X_OK)]


def build(log_file: Path | None = None, timeout: float = 3 * 3600) -> None:
    """Run testbed/build.sh (niced); raise ControlPlaneError with the log's tail on failure."""
    cmd = ["nice", "-n", "19", "bash", str(BUILD_SCRIPT)] if shutil.which("nice") else ["bash", str(BUILD_SCRIPT)]
    log_file = log_file or cache_dir() / "build.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as log:
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    if rc != 0 or missing_binaries():
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-40:])
        raise ControlPlaneError(f"testbed/build.sh failed (rc={rc}); log {log_file}:\n{tail}")


# --------------------------------------------------------------------------------------------
# small helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


try:  # looked up here, not in the forked child
    import ctypes

    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (ImportError, OSError, AttributeError):
    _prctl = None


def _die_with_parent() -> None:
    """In the child between fork and exec: get SIGTERM if the parent (thread) dies, so a killed
    test run leaves no control plane behind."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def node_manifest(name: str = "node-1", cpu: str = "2", memory: str = "8Gi", pods: str = "110") -> dict:
    """A Node as a kubelet would register it: Ready, with capacity == allocatable."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "testbed node (no kubelet)",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
        },
    }


# --------------------------------------------------------------------------------------------
# PKI (python `cryptography`)


def _write_pki(d: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)

    def pem_key(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def make_ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, name, cert

    def make_leaf(ca_key, ca_name, cn: str, usage, sans=None):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=7))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    ca_key, ca_name, ca_cert = make_ca("h2o-airflow-testbed-ca")
    sans = [
        x509.DNSName(n)
        for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
    ] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "10.96.0.1")]
    srv_key, srv_cert = make_leaf(ca_key, ca_name, "kube-apiserver", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    # Front proxy (request-header auth, aggregated APIs): its own CA, as kubeadm does.
    fp_ca_key, fp_ca_name, fp_ca_cert = make_ca("h2o-airflow-testbed-front-proxy-ca")
    fp_key, fp_cert = make_leaf(fp_ca_key, fp_ca_name, "front-proxy-client", ExtendedKeyUsageOID.CLIENT_AUTH)
    # The apiserver's client certificate towards kubelets (the node agent's kubelet server checks it).
    kc_key, kc_cert = make_leaf(ca_key, ca_name, "kube-apiserver-kubelet-client", ExtendedKeyUsageOID.CLIENT_AUTH)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = {
        "ca_crt": d / "ca.crt",
        "ca_key": d / "ca.key",
        "apiserver_crt": d / "apiserver.crt",
        "apiserver_key": d / "apiserver.key",
        "sa_key": d / "sa.key",
        "sa_pub": d / "sa.pub",
        "front_proxy_ca_crt": d / "front-proxy-ca.crt",
        "front_proxy_client_crt": d / "front-proxy-client.crt",
        "front_proxy_client_key": d / "front-proxy-client.key",
        "kubelet_client_crt": d / "apiserver-kubelet-client.crt",
        "kubelet_client_key": d / "apiserver-kubelet-client.key",
    }
    files["ca_crt"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files["ca_key"].write_bytes(pem_key(ca_key))
    files["apiserver_crt"].write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    files["apiserver_key"].write_bytes(pem_key(srv_key))
    files["sa_key"].write_bytes(pem_key(sa_key))
    files["sa_pub"].write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    files["front_proxy_ca_crt"].write_bytes(fp_ca_cert.public_bytes(serialization.Encoding.PEM))
    files["front_proxy_client_crt"].write_bytes(fp_cert.public_bytes(serialization.Encoding.PEM))
    files["front_proxy_client_key"].write_bytes(pem_key(fp_key))
    files["kubelet_client_crt"].write_bytes(kc_cert.public_bytes(serialization.Encoding.PEM))
    files["kubelet_client_key"].write_bytes(pem_key(kc_key))
    for k in ("ca_key", "apiserver_key", "sa_key", "front_proxy_client_key", "kubelet_client_key"):
        files[k].chmod(0o600)
    return files


def _write_audit_policy(path: Path) -> Path:
    """Metadata of every request of the Airflow identity; nothing of the control plane's own."""
    path.write_text(json.dumps({
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "users": [AIRFLOW_USER]}, {"level": "None"}],
    }))
    return path


def write_kubeconfig(path: Path, server: str, ca_pem: bytes, user: str, token: str) -> Path:
    """A kubeconfig with a bearer token (JSON, which every YAML loader reads)."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testbed",
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": f"{user}@testbed", "context": {"cluster": "testbed", "user": user}}],
        "current-context": f"{user}@testbed",
        "preferences": {},
    }
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------------------------
# the control plane


@dataclass(frozen=True)
class _Health:
    """Where a component answers 200 once it is up (``expect``: in the body too)."""

    url: str
    ctx: ssl.SSLContext | None = None
    token: str | None = None
    expect: bytes | None = None


@dataclass
class ControlPlane:
    server: str  # https://127.0.0.1:<port>
    ca_file: Path  # PEM of the CA that signed the apiserver's serving cert
    admin_token: str  # user testbed-admin, group system:masters
    airflow_token: str  # user "airflow", no groups: only what RBAC grants it
    admin_kubeconfig: Path
    airflow_kubeconfig: Path
    etcd_url: str
    work_dir: Path
    log_dir: Path
    versions: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)
    startup_seconds: dict[str, float] = field(default_factory=dict)  # per component + "total"
    stopped: dict[str, str] = field(default_factory=dict)  # filled by stop(): how each one ended
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)
    _argv: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _health: dict[str, _Health] = field(default_factory=dict, repr=False)

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    def rss_kib(self) -> dict[str, int | None]:
        """Resident memory of each process now, in KiB."""
        return {name: rss_kib(p.pid) for name, p in self._procs.items() if p.poll() is None}

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self._procs.items()}

    def log(self, name: str, lines: int = 40) -> str:
        f = self.log_dir / f"{name}.log"
        return "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) if f.exists() else ""

    def audit_requests(self, user: str = AIRFLOW_USER, since: _dt.datetime | None = None,
                       until: _dt.datetime | None = None) -> list[dict]:
        """The API requests ``user`` made (one audit event each, by ``auditID``), received between
        ``since`` and ``until`` (UTC), from the API server's audit log."""
        path = self.work_dir / "audit.log"
        seen: dict[str, dict] = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            event = json.loads(line)
            if (event.get("user") or {}).get("username") != user or event["auditID"] in seen:
                continue
            at = _dt.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if (since is None or at >= since) and (until is None or at <= until):
                seen[event["auditID"]] = event
        return list(seen.values())

    def stop_apiserver(self, timeout: float = 15) -> str:
        """Stop kube-apiserver alone (an outage: clients get connection refused); how it ended."""
        return _terminate(self._procs["kube-apiserver"], timeout)

    def start_apiserver(self, timeout: float = 120) -> None:
        """Start kube-apiserver again, with the same arguments, and wait until it is ready."""
        self._launch("kube-apiserver", self._argv["kube-apiserver"], self._health["kube-apiserver"], timeout, append=True)

    def restart_controllers(self, timeout: float = 120) -> None:
        """Start kube-controller-manager and kube-scheduler afresh, with the same arguments; return
        once both are healthy.

        After an API server outage their informers watch again only when client-go's backoff lets
        them (up to 30 s, doubled by jitter), and until then they act on stale caches: the
        EndpointSlice controller skips a Service as "informer cache is out of date", so a Service
        made then gets no endpoints and its pods no DNS records for a minute or more. A fresh
        process lists at once, so the tests after an outage meet a settled control plane.
        """
        for name in ("kube-controller-manager", "kube-scheduler"):
            self.stopped[name] = _terminate(self._procs[name], timeout=15)
            self._launch(name, self._argv[name], self._health[name], timeout, append=True)

    def _launch(self, name: str, argv: list[str], health: _Health, timeout: float, append: bool = False) -> None:
        """Start ``name``, kept by its pid with its arguments and health check (for a restart), and
        return once it is healthy."""
        p = _spawn(name, argv, self.log_dir, append)
        self._argv[name], self._health[name], self._procs[name], self.pids[name] = argv, health, p, p.pid
        _wait_http(name, p, health.url, self.log_dir, timeout, ctx=health.ctx, token=health.token,
                   expect=health.expect)

    def stop(self, timeout: float = 15) -> None:
        """Stop every process by its own pid: SIGTERM, wait, SIGKILL. Idempotent."""
        for name in reversed(list(self._procs)):
            self.stopped[name] = _terminate(self._procs[name], timeout)
        self._procs.clear()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _terminate(p: subprocess.Popen, timeout: float) -> str:
    """SIGTERM to this pid, wait, then SIGKILL; returns how it ended."""
    if p.poll() is not None:
        return f"exited {p.returncode}"
    t0 = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout)
        return f"SIGTERM, {time.monotonic() - t0:.1f}s"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        return f"SIGKILL after {timeout}s"


def _spawn(name: str, argv: list[str], log_dir: Path, append: bool = False) -> subprocess.Popen:
    log = open(log_dir / f"{name}.log", "ab" if append else "wb")  # noqa: SIM115 - the child owns it
    try:
        (log_dir / f"{name}.cmdline").write_text(" \\\n  ".join(argv) + "\n")
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            close_fds=True,
        )
    finally:
        log.close()


def _wait_http(
    name: str,
    proc: subprocess.Popen,
    url: str,
    log_dir: Path,
    timeout: float,
    ctx: ssl.SSLContext | None = None,
    token: str | None = None,
    expect: bytes | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join((log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-30:])
            raise ControlPlaneError(f"{name} exited with {proc.returncode} while starting:\n{tail}")
        req = urllib.request.Request(url)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                body = r.read()
                if r.status == 200 and (expect is None or expect in body):
                    return
                last = f"{r.status} {body[:200]!r}"
        except urllib.error.HTTPError as e:
            last = f"{e.code} {e.read()[:300]!r}"
        except (OSError, ssl.SSLError) as e:
            last = repr(e)
        time.sleep(0.25)
    tail = "\n".join((log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-30:])
    raise ControlPlaneError(f"{name} not healthy at {url} after {timeout}s (last: {last}); log tail:\n{tail}")


def _api_get(server: str, path: str, token: str, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    req = urllib.request.Request(server + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start(
    work_dir: Path | str,
    *,
    controllers: str = DEFAULT_CONTROLLERS,
    disable_admission_plugins: str = DEFAULT_DISABLED_ADMISSION,
    extra_apiserver_args: list[str] | None = None,
    timeout: float = 120,
    verbosity: int = 1,
) -> ControlPlane:
    """Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler; return once all
    are healthy and the controllers work (the "default" ServiceAccount exists)."""
    missing = missing_binaries()
    if missing:
        raise ControlPlaneError(f"binaries missing (run testbed/build.sh): {', '.join(map(str, missing))}")
    k8s_bin, etcd_bin = bin_dirs()
    work = Path(work_dir).resolve()
    log_dir, pki_dir = work / "logs", work / "pki"
    log_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()

    pki = _write_pki(pki_dir)
    ca_pem = pki["ca_crt"].read_bytes()
    admin_token, airflow_token = secrets.token_hex(24), secrets.token_hex(24)
    tokens = work / "tokens.csv"
    tokens.write_text(f'{admin_token},{ADMIN_USER},uid-{ADMIN_USER},"system:masters"\n{airflow_token},{AIRFLOW_USER},uid-{AIRFLOW_USER}\n')
    tokens.chmod(0o600)

    etcd_port, etcd_peer = free_port(), free_port()
    api_port, kcm_port, sched_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    admin_kc = write_kubeconfig(work / "admin.kubeconfig", server, ca_pem, ADMIN_USER, admin_token)
    airflow_kc = write_kubeconfig(work / "airflow.kubeconfig", server, ca_pem, AIRFLOW_USER, airflow_token)

    cp = ControlPlane(
        server=server,
        ca_file=pki["ca_crt"],
        admin_token=admin_token,
        airflow_token=airflow_token,
        admin_kubeconfig=admin_kc,
        airflow_kubeconfig=airflow_kc,
        etcd_url=etcd_url,
        work_dir=work,
        log_dir=log_dir,
        versions=versions(),
    )
    atexit.register(cp.stop)
    ca_ctx = ssl.create_default_context(cafile=str(pki["ca_crt"]))
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE

    def mark(name: str, t0: float) -> None:
        cp.startup_seconds[name] = round(time.monotonic() - t0, 2)

    try:
        t0 = time.monotonic()
        cp._launch(
            "etcd",
            [
                str(etcd_bin / "etcd"),
                "--name=testbed",
                f"--data-dir={work / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=testbed=http://127.0.0.1:{etcd_peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",  # throwaway data: no fsync, much faster on slow disks
                "--log-level=warn",
            ],
            _Health(f"{etcd_url}/health", expect=b'"health":"true"'),
            timeout,
        )
        mark("etcd", t0)

        t0 = time.monotonic()
        cp._launch(
            "kube-apiserver",
            [
                str(k8s_bin / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={work / 'apiserver-certs'}",
                f"--tls-cert-file={pki['apiserver_crt']}",
                f"--tls-private-key-file={pki['apiserver_key']}",
                f"--client-ca-file={pki['ca_crt']}",
                f"--token-auth-file={tokens}",
                "--anonymous-auth=false",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki['sa_pub']}",
                f"--service-account-signing-key-file={pki['sa_key']}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                f"--requestheader-client-ca-file={pki['front_proxy_ca_crt']}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki['front_proxy_client_crt']}",
                f"--proxy-client-key-file={pki['front_proxy_client_key']}",
                f"--disable-admission-plugins={disable_admission_plugins}",
                # kubelets (the node agent's kubelet server, for pods/portforward): reached at the Node's
                # InternalIP, with a client certificate; no --kubelet-certificate-authority, so their
                # self-signed serving certificates are not verified.
                f"--kubelet-client-certificate={pki['kubelet_client_crt']}",
                f"--kubelet-client-key={pki['kubelet_client_key']}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                # 127.0.0.1 is not a valid Endpoints address, so the "kubernetes" Service gets none.
                "--endpoint-reconciler-type=none",
                # every request of the "airflow" identity, one line per stage (the benchmarks count them)
                f"--audit-policy-file={_write_audit_policy(work / 'audit-policy.json')}",
                f"--audit-log-path={work / 'audit.log'}",
                "--audit-log-maxsize=0",
                f"--v={verbosity}",
                *(extra_apiserver_args or []),
            ],
            _Health(f"{server}/readyz", ctx=ca_ctx, token=admin_token),
            timeout,
        )
        mark("kube-apiserver", t0)

        t0 = time.monotonic()
        cp._launch(
            "kube-controller-manager",
            [
                str(k8s_bin / "kube-controller-manager"),
                f"--kubeconfig={admin_kc}",
                f"--authentication-kubeconfig={admin_kc}",
                f"--authorization-kubeconfig={admin_kc}",
                f"--controllers={controllers}",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={pki['sa_key']}",
                f"--root-ca-file={pki['ca_crt']}",
                f"--cluster-signing-cert-file={pki['ca_crt']}",
                f"--cluster-signing-key-file={pki['ca_key']}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--cluster-name=testbed",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={work / 'kcm-certs'}",
                f"--v={verbosity}",
            ],
            _Health(f"https://127.0.0.1:{kcm_port}/healthz", ctx=insecure),
            timeout,
        )
        mark("kube-controller-manager", t0)

        t0 = time.monotonic()
        cp._launch(
            "kube-scheduler",
            [
                str(k8s_bin / "kube-scheduler"),
                f"--kubeconfig={admin_kc}",
                f"--authentication-kubeconfig={admin_kc}",
                f"--authorization-kubeconfig={admin_kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={work / 'scheduler-certs'}",
                f"--v={verbosity}",
            ],
            _Health(f"https://127.0.0.1:{sched_port}/healthz", ctx=insecure),
            timeout,
        )
        mark("kube-scheduler", t0)

        # The controllers really run: the serviceaccount controller made "default" in "default".
        t0 = time.monotonic()
        deadline = time.monotonic() + timeout
        while True:
            status, _ = _api_get(server, "/api/v1/namespaces/default/serviceaccounts/default", admin_token, ca_ctx)
            if status == 200:
                break
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"no default ServiceAccount after {timeout}s (last status {status}); "
                    f"controller-manager log:\n{cp.log('kube-controller-manager')}"
                )
            dead = [n for n, ok in cp.alive().items() if not ok]
            if dead:
                raise ControlPlaneError(f"{dead} exited:\n" + "\n".join(cp.log(n) for n in dead))
            time.sleep(0.25)
        mark("controllers", t0)
        cp.startup_seconds["total"] = round(time.monotonic() - t_start, 2)
    except BaseException:
        cp.stop()
        raise
    return cp


if __name__ == "__main__":  # python -m testbed.controlplane [work_dir]: start, measure, stop
    import tempfile

    wd = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="h2o-testbed-"))
    cp = start(wd)
    try:
        print(
            json.dumps(
                {
                    "server": cp.server,
                    "versions": cp.versions,
                    "startup_seconds": cp.startup_seconds,
                    "pids": cp.pids,
                    "admin_kubeconfig": str(cp.admin_kubeconfig),
                    "log_dir": str(cp.log_dir),
                },
                indent=2,
            )
        )
        time.sleep(float(os.environ.get("TESTBED_IDLE_SECONDS", "20")))
        print(json.dumps({"rss_mib_idle": {k: round((v or 0) / 1024, 1) for k, v in cp.rss_kib().items()}}))
    finally:
        cp.stop()
        print(json.dumps({"stopped": cp.stopped}))
