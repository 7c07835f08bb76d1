"""Cluster DNS for the test bed, like the cluster DNS of a real Kubernetes cluster.

Answers, from the API server's Services, EndpointSlices and Pods:
- ``<svc>.<ns>.svc.<domain>`` A: the ClusterIP, or for a headless Service the addresses of
  its endpoints (not-ready ones too when ``publishNotReadyAddresses`` is set: the
  EndpointSlice controller then marks them ready for DNS);
- ``<svc>.<ns>.svc.<domain>`` SRV: one record per endpoint and port, target
  ``<hostname>.<svc>.<ns>.svc.<domain>`` (this is what H2O's discovery asks for);
- ``<hostname>.<svc>.<ns>.svc.<domain>`` A: that endpoint's address.
Names outside the cluster domain get NXDOMAIN (the test bed has no upstream).
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
from dataclasses import dataclass, field
from typing import Any

from dnslib import QTYPE, RCODE, RR, SRV, A, DNSRecord


@dataclass
class Records:
    a: dict[str, list[str]] = field(default_factory=dict)
    srv: dict[str, list[tuple[int, str]]] = field(default_factory=dict)


def build_records(services: list[dict[str, Any]], slices: list[dict[str, Any]], domain: str) -> Records:
    """Records from Services and EndpointSlices (as API dicts). Pure, so it is unit-tested."""
    rec = Records()
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in slices:
        owner = (s.get("metadata", {}).get("labels") or {}).get("kubernetes.io/service-name")
        if owner:
            by_service.setdefault((s["metadata"]["namespace"], owner), []).append(s)
    for svc in services:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        fqdn = f"{name}.{ns}.svc.{domain}"
        spec = svc.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            rec.a[fqdn] = [cluster_ip]
            continue
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        for s in by_service.get((ns, name), []):
            ports = [p.get("port") for p in s.get("ports") or [] if p.get("port")]
            for ep in s.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                if not (cond.get("ready", True) or publish_not_ready):
                    continue
                for ip in ep.get("addresses") or []:
                    host = ep.get("hostname") or ip.replace(".", "-")
                    target = f"{host}.{fqdn}"
                    rec.a.setdefault(fqdn, []).append(ip)
                    rec.a.setdefault(target, []).append(ip)
                    for port in ports or [54321]:
                        rec.srv.setdefault(fqdn, []).append((port, target))
    return rec


class ClusterDNS:
    """A UDP DNS server refreshed from the API server every ``refresh_s`` seconds."""

    def __init__(self, api_client: Any, listen: tuple[str, int], domain: str = "cluster.local", refresh_s: float = 0.5):
        self.api_client = api_client
        self.listen = listen
        self.domain = domain
        self.refresh_s = refresh_s
        self.records = Records()
        self._stop = threading.Event()
        self._server: socketserver.UDPServer | None = None
        self._threads: list[threading.Thread] = []

    def refresh(self) -> None:
        from kubernetes import client

        core, disc = client.CoreV1Api(self.api_client), client.DiscoveryV1Api(self.api_client)
        ser = self.api_client.sanitize_for_serialization
        services = [ser(s) for s in core.list_service_for_all_namespaces().items]
        slices = [ser(s) for s in disc.list_endpoint_slice_for_all_namespaces().items]
        self.records = build_records(services, slices, self.domain)

    def answer(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        rec = self.records
        if qtype in ("A", "ANY") and qname in rec.a:
            for ip in rec.a[qname]:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=1))
        if qtype in ("SRV", "ANY") and qname in rec.srv:
            for port, target in rec.srv[qname]:
                reply.add_answer(RR(qname, QTYPE.SRV, rdata=SRV(0, 100, port, target), ttl=1))
                for ip in rec.a.get(target, []):
                    reply.add_ar(RR(target, QTYPE.A, rdata=A(ip), ttl=1))
        if not reply.rr and qname not in rec.a and qname not in rec.srv:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply.pack()

    def start(self) -> None:
        dns = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                with contextlib.suppress(Exception):  # a malformed query is dropped, like a real server does
                    sock.sendto(dns.answer(data), self.client_address)

        self._server = socketserver.ThreadingUDPServer(self.listen, Handler)
        self.refresh()

        def loop() -> None:
            while not self._stop.wait(self.refresh_s):
                with contextlib.suppress(Exception):  # the API server may be restarting: keep the last records
                    self.refresh()

        self._threads = [threading.Thread(target=self._server.serve_forever, daemon=True), threading.Thread(target=loop, daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
