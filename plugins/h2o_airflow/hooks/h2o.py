"""Hook that turns a cluster (``ClusterInfo`` from XCom) into a connected H2O client."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseHook

from h2o_tasks.cluster import ClusterInfo
from h2o_tasks.cluster.login import Login
from h2o_tasks.s3 import S3Settings

# temporary credentials that end within this margin are fetched again before a long step
CREDENTIALS_MARGIN = timedelta(minutes=15)


class H2OHook(BaseHook):
    """
    Interact with an ephemeral H2O cluster created by this project.

    :param cluster: the ``ClusterInfo`` pushed by the create operator (dict), or None
        to use the URL of the ``h2o_conn_id`` connection (a long-lived cluster).
    :param h2o_conn_id: connection to a fixed H2O cluster (host, port, and the login of its hash login
        if it has one), used when ``cluster`` is not given.
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
        self._connection: Any = None  # this hook's own (h2o's module keeps only the newest)
        self._s3: S3Settings | None = None
        self._backend: Any = backend
        self._owns_backend = backend is None

    def s3_settings(self) -> S3Settings:
        """S3 endpoint and credentials from the AWS connection (``extra.endpoint_url`` for S3 APIs), whole:
        the session token and the end of temporary credentials (assume-role ``role_arn``, web identity,
        the environment or an instance profile) included. The secret and the token are masked in logs."""
        if not self.aws_conn_id:
            return S3Settings()
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk.log import mask_secret

        hook = S3Hook(aws_conn_id=self.aws_conn_id)
        region = hook.conn_config.region_name or "us-east-1"
        endpoint = hook.conn_config.get_service_endpoint_url("s3") or ""
        creds = hook.get_session(region_name=region).get_credentials()
        if creds is None:  # no credentials anywhere: anonymous requests (a public bucket)
            return S3Settings(endpoint_url=endpoint, region=region)
        frozen = creds.get_frozen_credentials()
        for secret in (frozen.secret_key, frozen.token):
            if secret:
                mask_secret(secret)
        # botocore's refreshable (temporary) credentials know when they end; static keys do not
        expiry = getattr(creds, "_expiry_time", None)
        return S3Settings(endpoint_url=endpoint, access_key=frozen.access_key or "", secret_key=frozen.secret_key or "",
                          session_token=frozen.token or "", region=region,
                          expires_at=expiry if isinstance(expiry, datetime) else None)

    def fresh_s3_settings(self, margin: timedelta = CREDENTIALS_MARGIN, now: datetime | None = None) -> S3Settings:
        """This hook's S3 settings, fetched again (a new assume-role) when they end within ``margin``
        of ``now``; a connected cloud gets the new ones too. Call it before a long step."""
        if self._s3 is None:
            self._s3 = self.s3_settings()
        if self._s3.expires_within(margin, now):
            self.log.info("S3 credentials end at %s (within %s): fetching new ones", self._s3.expires_at, margin)
            self._s3 = self.s3_settings()
            if self._client is not None and self._s3.access_key and not (self.cluster and self.cluster.s3_from_secret):
                from h2o_tasks.session import set_credentials

                set_credentials(self._s3)
        return self._s3

    def backend(self) -> Any:
        """The backend of this hook's cluster (built once, from the connection it was created with)."""
        if self._backend is None:
            from h2o_airflow.backends import backend_for_cluster

            assert self.cluster is not None
            self._backend = backend_for_cluster(self.cluster, self.kubernetes_conn_id or "")
        return self._backend

    def login(self) -> Login | None:
        """The cluster's REST login, from where its backend keeps it (masked in logs); None for a fixed
        cluster of ``h2o_conn_id``, whose connection's login is used instead."""
        from airflow.sdk.log import mask_secret

        if self.cluster is None:
            conn = self.get_connection(self.h2o_conn_id or self.default_conn_name)
            found = Login(conn.login, conn.password) if conn.login and conn.password else None
        else:
            found = self.backend().login(self.cluster)
        if found is not None:
            mask_secret(found.password)
        return found

    def url(self) -> str:
        """The cluster's URL as this process reaches it (opens the port-forward if the cluster needs one)."""
        if self.cluster is not None:
            if self.cluster.endpoint_mode != "port-forward":
                return self.cluster.url
            return self.backend().local_endpoint(self.cluster)
        conn = self.get_connection(self.h2o_conn_id or self.default_conn_name)
        scheme = conn.schema or "http"
        return f"{scheme}://{conn.host}:{conn.port or 54321}"

    def get_conn(self) -> Any:
        """The ``h2o`` module, connected to the cluster, with S3 credentials set."""
        if self._client is None:
            from h2o_tasks.session import connect

            # a cluster whose nodes read a Secret gets no credentials over its REST API
            self._connection = connect(self.url(), None if self.cluster and self.cluster.s3_from_secret
                                       else self.fresh_s3_settings(), login=self.login())
            import h2o

            self._client = h2o
        return self._client

    def close(self) -> None:
        """End this hook's H2O session, then its port-forward (if it opened one); the next ``get_conn``
        connects again."""
        if self._connection is not None:
            from h2o_tasks.session import disconnect

            disconnect(self._connection)  # through the forward, which is still open
            self._connection = None
        if self._backend is not None and self._owns_backend:
            self._backend.close()
            self._backend = None
        self._client = None

    def __enter__(self) -> H2OHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
