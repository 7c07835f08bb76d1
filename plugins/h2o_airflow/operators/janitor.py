"""Delete expired clusters: the safety net for runs whose teardown never ran."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from h2o_tasks.cluster import get_backend


class H2OJanitorOperator(BaseOperator):
    """
    Delete every cluster of ``backend`` whose expiry time has passed.

    :param backend: ``local`` or ``kubernetes``.
    """

    template_fields = ("backend",)

    def __init__(self, *, backend: str = "local", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend

    def execute(self, context: Any) -> dict[str, Any]:
        backend = get_backend(self.backend)
        expired = backend.list_expired()
        deleted = []
        for info in expired:
            self.log.warning("Deleting expired cluster %s (expired at %s)", info.name, info.expires_at)
            if backend.delete(info):
                deleted.append(info.name)
        self.log.info("%d expired cluster(s) deleted", len(deleted))
        return {"deleted": deleted}
