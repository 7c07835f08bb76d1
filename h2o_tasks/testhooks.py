"""Named points in the write protocols where a test can kill the process or make writers meet.

Test-only. ``H2O_TASKS_TEST_HOOKS`` holds a JSON object from step name to action, or
``@PATH`` of a file holding it (read at every step, so a test can change the actions of a
running Airflow deployment's tasks; a missing file means no actions):

- ``"kill"``: SIGKILL this process at that step (a worker dying between two lines);
- ``"kill-once:PATH"``: the same, unless PATH exists (it is created first): the first try
  dies, its retry goes through;
- ``"barrier:DIR:N[:TIMEOUT]"``: wait until N processes reached the step (each leaves a file
  in DIR), so that concurrent writers interleave there for certain;
- ``"sleep:SECONDS"``.

Unset (production), :func:`checkpoint` does nothing. The steps are listed in :data:`STEPS`;
an unknown step name in the variable is an error, so a test cannot silently miss its step.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

ENV = "H2O_TASKS_TEST_HOOKS"

STEPS = (
    # the create task, once its cluster is ready (before the run's other tasks use it)
    "cluster:ready",
    # the local backend's create: a node's JVM started but not yet recorded; then recorded
    "local:node-started",
    "local:node-saved",
    # the registry's champion pointer: between reading it (and gating) and the compare-and-swap
    "registry:before-cas",
    # a version's export: after the artifacts, before metadata.json (the version is incomplete)
    "export:before-metadata",
    # the commit of one partition's predictions (h2o_tasks.predictions)
    "commit:after-staging",
    "commit:after-write",
    "commit:before-switch",
    "commit:after-switch",
    "commit:before-cleanup",
)


def _actions() -> dict[str, str]:
    raw = os.environ.get(ENV, "")
    if raw.startswith("@"):
        path = Path(raw[1:])
        raw = path.read_text() if path.exists() else ""
    if not raw.strip():
        return {}
    actions = json.loads(raw)
    unknown = sorted(set(actions) - set(STEPS))
    if unknown:
        raise ValueError(f"{ENV} names unknown step(s) {unknown}; known: {', '.join(STEPS)}")
    return actions


def checkpoint(step: str) -> None:
    """Run the test action configured for ``step``, if any."""
    if step not in STEPS:
        raise ValueError(f"unknown test hook step {step!r}")
    action = _actions().get(step)
    if not action:
        return
    kind, _, arg = action.partition(":")
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "kill-once":
        try:
            Path(arg).touch(exist_ok=False)
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "sleep":
        time.sleep(float(arg))
    elif kind == "barrier":
        directory, count, *rest = arg.split(":")
        timeout = float(rest[0]) if rest else 120.0
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{step.replace(':', '_')}-{os.getpid()}-{uuid.uuid4().hex[:6]}").touch()
        deadline = time.monotonic() + timeout
        prefix = step.replace(":", "_") + "-"
        while sum(1 for p in path.iterdir() if p.name.startswith(prefix)) < int(count):
            if time.monotonic() > deadline:
                raise TimeoutError(f"test hook barrier at {step}: fewer than {count} writers arrived in {timeout}s")
            time.sleep(0.05)
    else:
        raise ValueError(f"{ENV}[{step!r}] = {action!r}: unknown action (kill, barrier:DIR:N, sleep:S)")


CLUSTER_SECONDS_ENV = "H2O_TASKS_TEST_CLUSTER_SECONDS"


def cluster_seconds() -> tuple[float | None, float | None]:
    """Test-only: a cluster's time-to-live and ceiling in seconds instead of ``cluster.ttl_minutes`` and
    ``cluster.max_run_minutes`` (which have a floor of 5 minutes), from ``H2O_TASKS_TEST_CLUSTER_SECONDS``
    (JSON ``{"ttl": 20, "ceiling": 90}``, either may be left out; or ``@PATH`` of a file holding it)."""
    raw = os.environ.get(CLUSTER_SECONDS_ENV, "")
    if raw.startswith("@"):
        path = Path(raw[1:])
        raw = path.read_text() if path.exists() else ""
    if not raw.strip():
        return None, None
    values = json.loads(raw)
    return values.get("ttl"), values.get("ceiling")
