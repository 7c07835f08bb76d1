"""Delete expired clusters: the safety net for runs whose teardown never ran."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from h2o_airflow.backends import backend_for


class H2OJanitorOperator(BaseOperator):
    """
    Delete every cluster of ``backend`` whose expiry time has passed.

    :param backend: ``local`` or ``kubernetes``.
    :param namespace: for Kubernetes, the namespace whose clusters are checked.
    :param kubernetes_conn_id: connection for the Kubernetes backend.
    """

    template_fields = ("backend", "namespace")

    def __init__(self, *, backend: str = "local", namespace: str = "h2o",
                 kubernetes_conn_id: str = "kubernetes_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        backend = backend_for(self.backend, kubernetes_conn_id=self.kubernetes_conn_id, namespace=self.namespace)
        expired = backend.list_expired()
        deleted = []
        for info in expired:
            self.log.warning("Deleting expired cluster %s (expired at %s)", info.name, info.expires_at)
            if backend.delete(info):
                deleted.append(info.name)
        self.log.info("%d expired cluster(s) deleted", len(deleted))
        return {"deleted": deleted}
