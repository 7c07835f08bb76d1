"""The test bed's pod network: network namespaces on a bridge, reachable from this host.

Layout (all made and removed by this module, as root):
  host  --veth (HOST_IP <-> GATEWAY_LINK_IP)-->  parent namespace: bridge br0 (BRIDGE_IP/24)
  pod namespaces: eth0 with 10.244.X.Y/24 on br0, default route via BRIDGE_IP
The host reaches pod addresses through a route via the parent namespace (which forwards),
and the pods reach the host's HOST_IP (where the cluster DNS listens). Services' ClusterIPs are
/32 addresses on the host's end of the link (``testbed/serviceproxy.py``). Nothing is bridged to
a physical interface: the addresses exist only inside namespaces this process created.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


@dataclass
class PodNetwork:
    """A /24 pod network behind a parent namespace. ``tag`` keeps concurrent beds apart."""

    tag: str = "tb0"
    subnet: str = "10.244.7.0/24"
    link_subnet: str = "10.244.254.0/30"
    allocated: dict[str, str] = field(default_factory=dict)
    lock: IO | None = field(default=None, repr=False)
    last_ip: str = ""

    @classmethod
    def claim(cls, lock_dir: Path = Path("/run/h2o-airflow-testbed"), slots: range = range(7, 63)) -> PodNetwork:
        """A network in the first free slot, held by an exclusive lock for this process's lifetime.

        Slot N is tag ``tbN``, pods in 10.244.N.0/24, host link 10.244.254.4N/30: two test
        sessions on one machine get disjoint names and addresses. A slot whose lock is free but
        whose namespaces exist was left by a crashed session; ``create`` removes them first.
        """
        lock_dir.mkdir(parents=True, exist_ok=True)
        for slot in slots:
            f = open(lock_dir / f"slot-{slot}.lock", "w")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            return cls(tag=f"tb{slot}", subnet=f"10.244.{slot}.0/24", link_subnet=f"10.244.254.{4 * slot}/30", lock=f)
        raise RuntimeError(f"no free test-bed network slot in {lock_dir} ({slots.start}..{slots.stop - 1} all locked)")

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    @property
    def parent(self) -> str:
        return f"{self.tag}-net"

    @property
    def host_link(self) -> str:
        """The host side of the link to the parent namespace (where the bed's ClusterIPs are added)."""
        return f"{self.tag}h"

    @property
    def bridge_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def host_ip(self) -> str:
        return str(next(iter(ipaddress.ip_network(self.link_subnet).hosts())))

    @property
    def gateway_link_ip(self) -> str:
        return str(list(ipaddress.ip_network(self.link_subnet).hosts())[1])

    def _in_parent(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.parent, *args, check=check)

    def create(self) -> None:
        self.destroy()
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        sh("ip", "netns", "add", self.parent)
        self._in_parent("ip", "link", "set", "lo", "up")
        self._in_parent("ip", "link", "add", "br0", "type", "bridge")
        self._in_parent("ip", "addr", "add", f"{self.bridge_ip}/{prefix}", "dev", "br0")
        self._in_parent("ip", "link", "set", "br0", "up")
        self._in_parent("sysctl", "-qw", "net.ipv4.ip_forward=1")
        host_if, peer_if = self.host_link, f"{self.tag}p"
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", self.parent)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        self._in_parent("ip", "addr", "add", f"{self.gateway_link_ip}/30", "dev", peer_if)
        self._in_parent("ip", "link", "set", peer_if, "up")
        sh("ip", "route", "add", self.subnet, "via", self.gateway_link_ip)

    def pod_ns(self, pod_uid: str) -> str:
        return f"{self.tag}-{hashlib.sha256(pod_uid.encode()).hexdigest()[:10]}"

    def add_pod(self, pod_uid: str, dns_search: list[str]) -> tuple[str, str]:
        """Create the pod's namespace; returns (namespace name, pod IP)."""
        ns = self.pod_ns(pod_uid)
        ip = self._next_ip()
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        veth = f"v{ns[-12:]}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", veth, "netns", self.parent)
        self._in_parent("ip", "link", "set", veth, "master", "br0")
        self._in_parent("ip", "link", "set", veth, "up")
        for cmd in (
            ("ip", "addr", "add", f"{ip}/{prefix}", "dev", "eth0"),
            ("ip", "link", "set", "eth0", "up"),
            ("ip", "link", "set", "lo", "up"),
            ("ip", "route", "add", "default", "via", self.bridge_ip),
        ):
            sh("ip", "netns", "exec", ns, *cmd)
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {self.host_ip}\nsearch {' '.join(dns_search)}\noptions ndots:5\n")
        self.allocated[pod_uid] = ip
        return ns, ip

    def _next_ip(self) -> str:
        """Round robin over the subnet, like the host-local IPAM: a pod's address is not handed out
        again right after the pod is gone (peers' ARP caches and late packets still point at it)."""
        used = set(self.allocated.values()) | {self.bridge_ip}
        hosts = [str(h) for h in ipaddress.ip_network(self.subnet).hosts()]
        start = hosts.index(self.last_ip) + 1 if self.last_ip in hosts else 0
        for ip in hosts[start:] + hosts[:start]:
            if ip not in used:
                self.last_ip = ip
                return ip
        raise RuntimeError(f"pod network {self.subnet} is full ({len(used)} addresses in use)")

    def remove_pod(self, pod_uid: str) -> None:
        ns = self.pod_ns(pod_uid)
        sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        self.allocated.pop(pod_uid, None)

    def destroy(self) -> None:
        """Remove the bed's namespaces, including pod namespaces of a crashed session in this slot
        (its ``allocated`` died with it: they are found by the slot's tag)."""
        for uid in list(self.allocated):
            self.remove_pod(uid)
        for ns in self.leftovers():
            sh("ip", "netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        sh("ip", "route", "del", self.subnet, check=False)
        sh("ip", "link", "del", self.host_link, check=False)
        sh("ip", "netns", "del", self.parent, check=False)

    def leftovers(self) -> list[str]:
        """Namespaces of this bed still present (for tests that check clean-up)."""
        out = sh("ip", "netns", "list", check=False).stdout.split("\n")
        return [ns for ns in (line.split()[0] for line in out if line) if ns.startswith(f"{self.tag}-") and ns != self.parent]
