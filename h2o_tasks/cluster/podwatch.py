"""A cluster's pods followed by one list and a watch (the triggerer's wait), not by polling the API server.

A forming cluster costs the API server one read of its StatefulSet, one list of its pods and
one watch request (renewed every ``WATCH_S``), whatever the wait's tick: fifty backfill runs
forming at once are a few requests a second, not a thousand.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# A watch request lasts this long on the server; then it is renewed from the last resourceVersion.
WATCH_S = 60


@dataclass
class PodCache:
    """The pods of one label selector as the last list and the watch events since left them (API dicts)."""

    namespace: str
    selector: str
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    resource_version: str = ""
    deleted: int = 0  # DELETED events seen: the cluster may be going away (the caller reads its StatefulSet again)
    requests: int = 0  # API requests made (list + watch), for the wait's log line

    def apply(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        self.resource_version = meta.get("resourceVersion") or self.resource_version
        if kind == "DELETED":
            self.pods.pop(meta.get("name", ""), None)
            self.deleted += 1
        elif kind in ("ADDED", "MODIFIED"):
            self.pods[meta.get("name", "")] = pod

    async def follow(self, api: Any) -> None:
        """List, then watch from the list's resourceVersion, forever (until cancelled); an expired
        resourceVersion (410 Gone) lists again. Any other API error is raised to the caller."""
        from kubernetes_asyncio import client as aclient
        from kubernetes_asyncio import watch as awatch
        from kubernetes_asyncio.client.exceptions import ApiException

        core = aclient.CoreV1Api(api)
        while True:
            if not self.resource_version:
                listed = await core.list_namespaced_pod(self.namespace, label_selector=self.selector)
                self.requests += 1
                self.pods = {p.metadata.name: api.sanitize_for_serialization(p) for p in listed.items}
                self.resource_version = listed.metadata.resource_version
            self.requests += 1
            try:
                async with awatch.Watch() as w:
                    async for event in w.stream(core.list_namespaced_pod, self.namespace, label_selector=self.selector,
                                                resource_version=self.resource_version, timeout_seconds=WATCH_S,
                                                allow_watch_bookmarks=True):
                        if event["type"] == "BOOKMARK":
                            self.resource_version = event["raw_object"]["metadata"]["resourceVersion"]
                        else:
                            self.apply(event["type"], event["raw_object"])
            except ApiException as exc:
                if exc.status != 410:
                    raise
                log.info("Pod watch of %s/%s expired (410 Gone): listing again", self.namespace, self.selector)
                self.resource_version = ""


async def first_error(task: asyncio.Task[Any]) -> None:
    """Raise the error of a finished background task (a broken watch) in the caller."""
    if task.done():
        task.result()
        raise RuntimeError("the pod watch ended")
