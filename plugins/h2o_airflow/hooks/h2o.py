"""Hook that turns a cluster (``ClusterInfo`` from XCom) into a connected H2O client."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from h2o_tasks.cluster import ClusterInfo
from h2o_tasks.s3 import S3Settings


class H2OHook(BaseHook):
    """
    Interact with an ephemeral H2O cluster created by this project.

    :param cluster: the ``ClusterInfo`` pushed by the create operator (dict), or None
        to use the URL of the ``h2o_conn_id`` connection (a long-lived cluster).
    :param h2o_conn_id: connection to a fixed H2O cluster (host and port), used when
        ``cluster`` is not given.
    :param aws_conn_id: the AWS connection whose credentials and ``endpoint_url`` the cluster
        uses to read and write S3. Credentials are handed over at run time, never stored.
    :param kubernetes_conn_id: for a Kubernetes cluster in ``port-forward`` endpoint mode, the
        connection to open this process's forward with (default: the one that created it).
    :param backend: the cluster's backend, when the caller has one already (an operator shares
        its backend between this hook and its watch: one port-forward per task, not two).

    In ``port-forward`` mode the URL in ``cluster`` is not reachable from here: ``get_conn``
    opens a forward to the leader pod that lives until ``close()`` (or the end of the process).
    The hook is a context manager.
    """

    conn_name_attr = "h2o_conn_id"
    default_conn_name = "h2o_default"
    conn_type = "http"
    hook_name = "H2O"

    def __init__(self, cluster: dict[str, Any] | ClusterInfo | None = None, h2o_conn_id: str | None = None,
                 aws_conn_id: str | None = "aws_default", kubernetes_conn_id: str | None = None,
                 backend: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = ClusterInfo.from_dict(cluster) if isinstance(cluster, dict) else cluster
        self.h2o_conn_id = h2o_conn_id
        self.aws_conn_id = aws_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self._client: Any = None
        self._backend: Any = backend
        self._owns_backend = backend is None

    def s3_settings(self) -> S3Settings:
        """S3 endpoint and credentials from the AWS connection (``extra.endpoint_url`` for S3 APIs)."""
        if not self.aws_conn_id:
            return S3Settings()
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=self.aws_conn_id)
        creds = hook.get_credentials()
        endpoint = hook.conn_config.get_service_endpoint_url("s3") or ""
        return S3Settings(endpoint_url=endpoint, access_key=creds.access_key or "", secret_key=creds.secret_key or "",
                          region=hook.conn_config.region_name or "us-east-1")

    def url(self) -> str:
        """The cluster's URL as this process reaches it (opens the port-forward if the cluster needs one)."""
        if self.cluster is not None:
            if self.cluster.endpoint_mode != "port-forward":
                return self.cluster.url
            if self._backend is None:
                from h2o_airflow.backends import backend_for_cluster

                self._backend = backend_for_cluster(self.cluster, self.kubernetes_conn_id or "")
            return self._backend.local_endpoint(self.cluster)
        conn = self.get_connection(self.h2o_conn_id or self.default_conn_name)
        scheme = conn.schema or "http"
        return f"{scheme}://{conn.host}:{conn.port or 54321}"

    def get_conn(self) -> Any:
        """The ``h2o`` module, connected to the cluster, with S3 credentials set."""
        if self._client is None:
            from h2o_tasks.session import connect

            connect(self.url(), self.s3_settings())
            import h2o

            self._client = h2o
        return self._client

    def close(self) -> None:
        """End this hook's port-forward (if it opened one); the next ``get_conn`` opens a new one."""
        if self._backend is not None and self._owns_backend:
            self._backend.close()
            self._backend = None
        self._client = None

    def __enter__(self) -> H2OHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
