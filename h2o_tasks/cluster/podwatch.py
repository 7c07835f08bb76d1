"""A cluster's pods followed by one list and a watch (the triggerer's wait), not by polling the API server.

A forming cluster costs the API server one read of its StatefulSet, one list of its pods and
one watch request (renewed every ``WATCH_S``), whatever the wait's tick: fifty backfill runs
forming at once are a few requests a second, not a thousand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# A watch request lasts this long on the server; then it is renewed from the last resourceVersion. Below
# the 60 s total timeout the cncf provider's async client puts on every request, so the server ends it.
WATCH_S = 45
# Watches that break (a timeout, a dropped or garbled stream) or end at once with nothing, in a row,
# before the error goes to the caller (whose grace decides).
WATCH_FAILURES = 3


@dataclass
class PodCache:
    """The pods of one label selector as the last list and the watch events since left them (API dicts)."""

    namespace: str
    selector: str
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    resource_version: str = ""
    deleted: int = 0  # pods seen to go (DELETED events, or missing from a new list): the cluster may be going
    renewals: int = 0  # watch requests made: the caller checks its StatefulSet again at each
    requests: int = 0  # API requests made (list + watch), for the wait's log line

    def apply(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        self.resource_version = meta.get("resourceVersion") or self.resource_version
        if kind == "DELETED":
            self.pods.pop(meta.get("name", ""), None)
            self.deleted += 1
        elif kind in ("ADDED", "MODIFIED"):
            self.pods[meta.get("name", "")] = pod

    def relist(self, pods: dict[str, dict[str, Any]], resource_version: str) -> None:
        self.deleted += len(set(self.pods) - set(pods))
        self.pods, self.resource_version = pods, resource_version

    async def follow(self, api: Any) -> None:
        """List, then watch from the list's resourceVersion, forever (until cancelled); an expired
        resourceVersion (410 Gone) lists again, a broken stream is watched again. API errors, and
        streams that keep breaking, are raised to the caller."""
        import aiohttp
        from kubernetes_asyncio import client as aclient
        from kubernetes_asyncio import watch as awatch
        from kubernetes_asyncio.client.exceptions import ApiException

        core = aclient.CoreV1Api(api)
        failures = 0
        while True:
            if not self.resource_version:
                listed = await core.list_namespaced_pod(self.namespace, label_selector=self.selector)
                self.requests += 1
                self.relist({p.metadata.name: api.sanitize_for_serialization(p) for p in listed.items},
                            listed.metadata.resource_version)
            self.requests += 1
            self.renewals += 1
            started, events = time.monotonic(), 0
            try:
                async with awatch.Watch() as w:
                    async for event in w.stream(core.list_namespaced_pod, self.namespace, label_selector=self.selector,
                                                resource_version=self.resource_version, timeout_seconds=WATCH_S,
                                                allow_watch_bookmarks=True):
                        if not isinstance(event, dict):  # a proxy's error page, not a watch event
                            raise RuntimeError(f"the pod watch of {self.namespace}/{self.selector} answered "
                                               f"{str(event)[:200]!r}")
                        events += 1
                        if event["type"] == "BOOKMARK":
                            self.resource_version = event["raw_object"]["metadata"]["resourceVersion"]
                        else:
                            self.apply(event["type"], event["raw_object"])
            except ApiException as exc:
                if exc.status != 410:
                    raise
                log.info("Pod watch of %s/%s expired (410 Gone): listing again", self.namespace, self.selector)
                self.resource_version = ""
                continue
            except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                failures = 0 if events else failures + 1
                if failures >= WATCH_FAILURES:
                    raise
                log.info("Pod watch of %s/%s broke (%s): watching again", self.namespace, self.selector,
                         type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            if events or time.monotonic() - started > 1.0:
                failures = 0
                continue
            failures += 1  # ended at once with nothing: an error the stream did not carry
            if failures >= WATCH_FAILURES:
                raise RuntimeError(f"the pod watch of {self.namespace}/{self.selector} ends at once "
                                   f"({failures} times in a row)")
            await asyncio.sleep(1.0)


async def first_error(task: asyncio.Task[Any]) -> None:
    """Raise the error of a finished background task (a broken watch) in the caller."""
    if task.done():
        task.result()
        raise RuntimeError("the pod watch ended")


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel a background task and wait for it, without swallowing a cancellation of the caller."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.debug("pod watch ended with %r", task.exception())
