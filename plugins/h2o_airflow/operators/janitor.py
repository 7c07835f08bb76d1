"""Delete abandoned clusters: the safety net for runs whose teardown never ran."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator

from h2o_airflow.backends import DEFAULT_KUBERNETES_CONN_ID, backend_for
from h2o_tasks.errors import ClusterError

LIVE_RUN_STATES = ("queued", "running")
MEMORY_VARIABLE = "h2o_janitor_targets"


class H2OJanitorOperator(BaseOperator):
    """
    Delete every cluster of ``backend`` (in ``namespace``) that is expired or whose DAG run is over.

    A cluster is reaped when its expiry has passed (each task that uses it pushes it forward),
    or when the DAG run that created it (its ids are recorded on the cluster) is no longer
    queued or running, or no longer exists. Each deletion is logged with its reason. The
    deletion is conditional on the expiry the decision read (atomic with the tasks' extends),
    so a run that came back to life in between keeps its cluster.

    :param backend: ``local`` or ``kubernetes``.
    :param namespace: for Kubernetes, the namespace whose clusters are checked.
    :param kubernetes_conn_id: connection for the Kubernetes backend.
    """

    template_fields = ("backend", "namespace")

    def __init__(self, *, backend: str = "local", namespace: str = "h2o",
                 kubernetes_conn_id: str = DEFAULT_KUBERNETES_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        return self.sweep(self.backend, self.namespace, self.kubernetes_conn_id, context)

    def sweep(self, backend_name: str, namespace: str, kubernetes_conn_id: str, context: Any) -> dict[str, Any]:
        """Delete the abandoned clusters of one backend (and namespace); what was deleted and why."""
        backend = backend_for(backend_name, kubernetes_conn_id=kubernetes_conn_id, namespace=namespace)
        now = datetime.now(UTC)
        deleted, reasons, failed = [], {}, {}
        for info in backend.list_clusters():
            reason = self.reason(info, now, context)
            if reason is None:
                continue
            self.log.warning("Deleting cluster %s: %s", info.name, reason)
            try:
                # the decision was made on a listing: a task that extended the cluster since keeps it
                if backend.delete(info, if_unchanged=True):
                    deleted.append(info.name)
                    reasons[info.name] = reason
                else:
                    self.log.warning("Kept cluster %s: it changed after it was listed (extended or made again by "
                                     "its run, or deleted)", info.name)
            except Exception as exc:  # one cluster that cannot go now does not keep the others
                self.log.error("Could not delete cluster %s: %s", info.name, exc)
                failed[info.name] = exc if isinstance(exc, ClusterError) else ClusterError(
                    f"{type(exc).__name__}: {exc}", retryable=True, reason="DeleteFailed")
        self.log.info("%d cluster(s) deleted", len(deleted))
        if failed:
            first = next(iter(failed.values()))
            raise ClusterError(f"{len(failed)} cluster(s) could not be deleted ({', '.join(failed)}; deleted: "
                               f"{', '.join(deleted) or 'none'}): {first}", retryable=True,
                               reason=first.reason) from first
        return {"deleted": deleted, "reasons": reasons}

    def reason(self, info: Any, now: datetime, context: Any) -> str | None:
        """Why the cluster should go, or None while its run may still use it."""
        if getattr(info, "reaping_since", ""):  # no task can extend it any more: finish that sweep's work
            return f"a janitor began deleting it at {info.reaping_since}"
        if info.expires_at and datetime.fromisoformat(info.expires_at) <= now:
            return f"expired at {info.expires_at}"
        if info.dag_id and info.run_id:
            state = self._run_state(context, info.dag_id, info.run_id)
            if state == "gone":
                return f"its DAG run {info.dag_id} / {info.run_id} no longer exists"
            if state is not None and state not in LIVE_RUN_STATES:
                return f"its DAG run {info.dag_id} / {info.run_id} is {state}"
        return None

    def _run_state(self, context: Any, dag_id: str, run_id: str) -> str | None:
        """The run's state; "gone" if it does not exist; None if it cannot be known now (kept)."""
        try:
            state = context["ti"].get_dagrun_state(dag_id, run_id)
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status == 404 or "not found" in f"{exc} {getattr(exc, 'detail', '')}".lower():
                return "gone"
            self.log.warning("Could not read the state of DAG run %s / %s (cluster kept): %s", dag_id, run_id, exc)
            return None
        return str(getattr(state, "value", state)).lower()  # the task SDK answers with a DagRunState


class H2ORememberedJanitorOperator(H2OJanitorOperator):
    """
    Sweep the backends and namespaces that earlier runs of this task saw in the pipeline files but
    today's files no longer name: a file broken or changed while its run was under way leaves its
    cluster where no ``delete_abandoned_*`` task looks any more.

    The targets are remembered in the Airflow Variable ``memory_key`` (JSON; the janitor DAG has
    one active run at a time, so one writer) and forgotten ``forget_after_days`` after a file last
    named them. A target that cannot be swept (a namespace deleted, a connection removed) is
    logged and kept for the next run; an entry that does not read is logged and dropped.

    :param current: ``[backend, namespace, kubernetes_conn_id]`` the pipeline files name today
        (swept by the other tasks of the DAG).
    """

    template_fields = ()

    def __init__(self, *, current: list[list[str]], forget_after_days: float = 30.0,
                 memory_key: str = MEMORY_VARIABLE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.current = [list(t) for t in current]
        self.forget_after_days = forget_after_days
        self.memory_key = memory_key

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk import Variable

        now = datetime.now(UTC)
        targets = self._read(Variable.get(self.memory_key, default=None))
        named = set()
        for backend, namespace, *conn in self.current:
            conn_id = (conn[0] if conn else "") or (self.kubernetes_conn_id if backend == "kubernetes" else "")
            key = target_key(backend, namespace, conn_id)
            named.add(key)
            targets[key] = {"backend": backend, "namespace": namespace, "kubernetes_conn_id": conn_id,
                            "last_seen": now.isoformat()}
        swept: dict[str, Any] = {}
        for key, target in sorted(targets.items()):
            if key in named:
                continue
            age_days = (now - datetime.fromisoformat(target["last_seen"])).total_seconds() / 86400
            if age_days > self.forget_after_days:
                self.log.info("Forgetting %s: no pipeline file has named it for %.0f days", key, age_days)
                targets.pop(key)
                continue
            self.log.info("Sweeping %s, which no pipeline file names any more (last named %s)", key,
                          target["last_seen"])
            try:
                swept[key] = self.sweep(target["backend"], target["namespace"] or "h2o",
                                        target.get("kubernetes_conn_id") or self.kubernetes_conn_id, context)
            except Exception as exc:  # kept for the next run; the other targets are still swept
                self.log.warning("Could not sweep %s (kept for the next run): %s", key, exc)
        Variable.set(self.memory_key, json.dumps(targets, sort_keys=True),
                     description="h2o_janitor: backends and namespaces the pipeline files named (JSON)")
        return {"targets": targets, "swept": swept}

    def _read(self, raw: str | None) -> dict[str, dict[str, str]]:
        """The remembered targets; entries that do not read are logged and dropped."""
        try:
            stored = json.loads(raw) if raw else {}
        except ValueError:
            self.log.warning("Variable %s is not JSON (forgotten): %.200s", self.memory_key, raw)
            return {}
        targets = {}
        for key, target in (stored.items() if isinstance(stored, dict) else []):
            try:
                datetime.fromisoformat(target["last_seen"])
                if target["backend"] not in ("local", "kubernetes") or not isinstance(target["namespace"], str):
                    raise ValueError(target)
            except (KeyError, TypeError, ValueError) as exc:
                self.log.warning("Remembered target %s does not read (dropped): %s", key, exc)
                continue
            targets[key] = target
        return targets


def target_key(backend: str, namespace: str, conn_id: str) -> str:
    """``backend/namespace``, with ``@connection`` when it is not the default one."""
    key = f"{backend}/{namespace}"
    return key + (f"@{conn_id}" if conn_id and conn_id != DEFAULT_KUBERNETES_CONN_ID else "")


class H2OStagingSweepOperator(BaseOperator):
    """
    Remove what killed tasks left under the Hive staging root (``$H2O_AIRFLOW_HIVE_STAGING_DIR``): a
    cluster's import staging and the hive engine's work directories, once nothing in them has
    changed for ``older_than_minutes`` (longer than any run may last). The Hive sink's tables and
    anything else there are never touched (:mod:`h2o_tasks.staging`).

    :param older_than_minutes: the age, from the newest change inside an entry, at which it goes.
    """

    template_fields = ()

    def __init__(self, *, older_than_minutes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.older_than_minutes = older_than_minutes

    def execute(self, context: Any) -> dict[str, Any]:
        from h2o_airflow.operators.model import hive_staging_root
        from h2o_tasks import staging

        root = hive_staging_root()
        removed = staging.sweep(root, self.older_than_minutes * 60)
        for name in removed:
            self.log.warning("Removed leftover staging %s (unchanged for %d minutes)", root / name,
                             self.older_than_minutes)
        self.log.info("%d leftover staging entr%s removed under %s", len(removed), "y" if len(removed) == 1 else "ies",
                      root)
        return {"root": str(root), "removed": removed}
