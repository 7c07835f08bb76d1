"""When is an H2O cloud ready? One pure decision shared by every backend.

Ready means the leader answers ``/3/Cloud`` with ``cloud_size == expected``, consensus and a
healthy cloud, not merely "a process is up" or "a pod is Ready": ``/kubernetes/isLeaderNode``
answers 200 on every node until the cloud forms, and an early lookup timeout makes each node
form its own cloud (split brain) while all of them report ready.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from h2o_tasks.cluster.login import Login, urlopen


@dataclass(frozen=True)
class CloudState:
    """The fields of ``GET /3/Cloud`` that readiness depends on."""

    cloud_size: int
    consensus: bool
    healthy: bool
    locked: bool
    cloud_name: str = ""
    bad_nodes: int = 0
    version: str = ""

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> CloudState:
        return cls(
            cloud_size=int(payload.get("cloud_size", 0)),
            consensus=bool(payload.get("consensus", False)),
            healthy=bool(payload.get("cloud_healthy", False)),
            locked=bool(payload.get("locked", False)),
            cloud_name=str(payload.get("cloud_name", "")),
            bad_nodes=int(payload.get("bad_nodes", 0) or 0),
            version=str(payload.get("version", "")),
        )


@dataclass(frozen=True)
class Decision:
    ready: bool
    failed: bool = False
    reason: str = ""
    message: str = ""


def decide(cloud: CloudState | None, expected: int, *, elapsed_s: float = 0.0,
           formation_timeout_s: float | None = None) -> Decision:
    """Decide from one observation of the leader's cloud.

    :param cloud: the leader's ``/3/Cloud`` state, or None if it did not answer yet.
    :param expected: the number of nodes the cloud must have.
    :param elapsed_s: seconds since the cluster was created.
    :param formation_timeout_s: after this, a cloud smaller than ``expected`` is a failure
        (H2O's node lookup gave up: the nodes will not join any more).
    """
    if cloud is None:
        return Decision(False, reason="NotAnswering", message="the leader does not answer /3/Cloud yet")
    if cloud.cloud_size > expected:
        return Decision(False, failed=True, reason="CloudTooLarge",
                        message=f"cloud {cloud.cloud_name!r} has {cloud.cloud_size} nodes, expected {expected}: "
                                "nodes of another cluster joined it (shared name or flatfile)")
    if cloud.cloud_size < expected:
        late = formation_timeout_s is not None and elapsed_s > formation_timeout_s
        msg = f"cloud has {cloud.cloud_size} of {expected} nodes"
        if late:
            return Decision(False, failed=True, reason="CloudIncomplete",
                            message=f"{msg} after {elapsed_s:.0f}s (lookup timeout {formation_timeout_s:.0f}s): "
                                    "the missing nodes will not join; check discovery and node logs")
        return Decision(False, reason="Forming", message=msg)
    if not cloud.consensus:
        return Decision(False, reason="NoConsensus", message=f"{expected} nodes seen, waiting for consensus")
    if not cloud.healthy or cloud.bad_nodes:
        return Decision(False, reason="Unhealthy", message=f"cloud reports {cloud.bad_nodes} bad node(s)")
    return Decision(True, reason="Ready", message=f"cloud {cloud.cloud_name!r} of {expected} nodes is ready")


def fetch_cloud(url: str, login: Login | None = None, timeout: float = 2.0) -> CloudState | None:
    """The node's ``/3/Cloud`` (asked with the cluster's ``login``), or None when it does not answer (yet)."""
    try:
        with urlopen(f"{url}/3/Cloud?skip_ticks=true", login, timeout) as resp:
            return CloudState.from_json(json.load(resp))
    except urllib.error.HTTPError as exc:
        # waiting would not help: the wrong login, or none (a 403 is a follower of a Kubernetes cloud:
        # H2O answers only on its leader there, and a follower may pass for one while the cloud forms)
        if exc.code == 401:
            from h2o_tasks.errors import ClusterError

            what = "the cluster's login" if login else "a request without a login"
            raise ClusterError(f"the H2O node at {url} refused {what} ({exc.code}): the password the backend keeps "
                               "for this cluster is not the one its nodes were started with",
                               reason="Unauthorized") from None
        return None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):  # not a node starting: no wait helps
            from h2o_tasks.errors import ClusterError

            raise ClusterError(f"the H2O node at {url} presents a certificate the client does not trust "
                               f"({exc.reason.verify_message}): cluster.tls must name the Secret key of the CA "
                               "that signed the keystore's certificate (ca_key), and the certificate must name "
                               "the address the client uses", reason="CertificateUntrusted") from None
        return None
    except (OSError, ValueError):
        return None


def poll_until_ready(name: str, status: Callable[[float], Any], timeout_s: float, poll_s: float) -> Any:
    """Call ``status(elapsed_s)`` until ready; raise at once on a failure, or at the timeout."""
    from h2o_tasks.cluster.base import GONE
    from h2o_tasks.errors import ClusterError, ClusterNotReadyError

    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        st = status(elapsed)
        if st.ready:
            return st
        if st.failed:
            raise ClusterError(f"cluster {name} failed ({st.reason}): {st.message}", reason=st.reason,
                               retryable=st.reason in GONE)
        if elapsed > timeout_s:
            raise ClusterNotReadyError(f"cluster {name} not ready after {timeout_s:.0f}s: {st.message}")
        time.sleep(poll_s)
