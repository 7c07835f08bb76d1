"""ClusterIP Services for the test bed, as kube-proxy's userspace mode made them.

For every Service with a ClusterIP, each port gets a listener on ``<clusterIP>:<port>`` (the address
added to the bed's host link as a /32, so only this host's processes reach it). A connection is
relayed to one ready endpoint of the Service's EndpointSlices, on the slice's port of the same
name (the resolved ``targetPort``); with no ready endpoint, it is closed at once, as kube-proxy
rejects it. The routes come from the API server every ``refresh_s`` seconds, like the bed's DNS.
Nothing is read or changed in the relayed bytes: TLS passes through to the pod.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import subprocess
import threading
from typing import Any

Route = tuple[str, int]  # (address, port)


def build_routes(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> dict[Route, list[Route]]:
    """``(clusterIP, port) -> ready endpoints`` from Services and EndpointSlices (as API dicts). Pure."""
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in slices:
        owner = (s.get("metadata", {}).get("labels") or {}).get("kubernetes.io/service-name")
        if owner:
            by_service.setdefault((s["metadata"]["namespace"], owner), []).append(s)
    routes: dict[Route, list[Route]] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip or cluster_ip == "None":
            continue  # headless: its names resolve to the pods themselves
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        for port in spec.get("ports") or []:
            if (port.get("protocol") or "TCP") != "TCP":
                continue
            name = port.get("name") or ""
            targets: list[Route] = []
            for s in by_service.get(key, []):
                target = next((p.get("port") for p in s.get("ports") or [] if (p.get("name") or "") == name), None)
                if target is None:
                    continue
                for ep in s.get("endpoints") or []:
                    if (ep.get("conditions") or {}).get("ready", True):
                        targets += [(ip, int(target)) for ip in ep.get("addresses") or []]
            routes[(cluster_ip, int(port["port"]))] = sorted(targets)
    return routes


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class ServiceProxy:
    """Listeners on the ClusterIPs of the API server's Services, relaying to their ready endpoints."""

    def __init__(self, api_client: Any, link: str, refresh_s: float = 0.5):
        self.api_client = api_client
        self.link = link  # the host side of the bed's network, where the ClusterIPs are added
        self.refresh_s = refresh_s
        self.routes: dict[Route, list[Route]] = {}
        self._listeners: dict[Route, socket.socket] = {}
        self._addresses: set[str] = set()
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        from kubernetes import client

        core, disc = client.CoreV1Api(self.api_client), client.DiscoveryV1Api(self.api_client)
        ser = self.api_client.sanitize_for_serialization
        routes = build_routes([ser(s) for s in core.list_service_for_all_namespaces().items],
                              [ser(s) for s in disc.list_endpoint_slice_for_all_namespaces().items])
        self.routes = routes
        for route in set(self._listeners) - set(routes):
            self._listeners.pop(route).close()
        for ip in self._addresses - {ip for ip, _ in routes}:
            self._address("del", ip)
        for route in set(routes) - set(self._listeners):
            self._listen(route)

    def _address(self, op: str, ip: str) -> None:
        # not checked: an address already there is as good as added, and a missing one fails the bind
        subprocess.run(["ip", "addr", op, f"{ip}/32", "dev", self.link], check=False, capture_output=True)
        (self._addresses.add if op == "add" else self._addresses.discard)(ip)

    def _listen(self, route: Route) -> None:
        if route[0] not in self._addresses:
            self._address("add", route[0])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(route)
        sock.listen(64)
        self._listeners[route] = sock
        threading.Thread(target=self._accept, args=(route, sock), daemon=True,
                         name=f"service {route[0]}:{route[1]}").start()

    def _accept(self, route: Route, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:  # closed: the Service is gone, or the proxy stopped
                return
            threading.Thread(target=self._relay, args=(route, conn), daemon=True).start()

    def _relay(self, route: Route, conn: socket.socket) -> None:
        targets = self.routes.get(route) or []
        if not targets:
            conn.close()  # no ready endpoint: refused, as kube-proxy does
            return
        target = targets[next(self._turn) % len(targets)]
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
        back.start()
        _pipe(conn, upstream)
        back.join()
        conn.close()
        upstream.close()

    def start(self) -> None:
        self.refresh()

        def loop() -> None:
            while not self._stop.wait(self.refresh_s):
                with contextlib.suppress(Exception):  # the API server may be restarting: keep the last routes
                    self.refresh()

        self._thread = threading.Thread(target=loop, daemon=True, name="service proxy")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        for sock in self._listeners.values():
            sock.close()
        self._listeners.clear()
        for ip in list(self._addresses):
            self._address("del", ip)
