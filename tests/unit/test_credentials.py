"""S3 credentials handed over whole (the session token of temporary ones) and fetched again before a
long step when they end within the margin; the clock is injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from h2o_airflow.hooks.h2o import CREDENTIALS_MARGIN, H2OHook
from h2o_tasks.s3 import S3Settings

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _hook(monkeypatch, ends: list[datetime | None]) -> tuple[H2OHook, list[S3Settings], list[S3Settings]]:
    """A hook whose connection yields temporary credentials ending at ``ends`` in turn; (hook, fetched, pushed)."""
    fetched: list[S3Settings] = []
    pushed: list[S3Settings] = []
    hook = H2OHook(aws_conn_id="aws_role")

    def s3_settings() -> S3Settings:
        i = len(fetched)
        fetched.append(S3Settings(access_key=f"ASIA{i}", secret_key=f"secret{i}", session_token=f"token{i}",
                                  expires_at=ends[i]))
        return fetched[-1]

    monkeypatch.setattr(hook, "s3_settings", s3_settings)
    monkeypatch.setattr("h2o_tasks.session.set_credentials", pushed.append)
    return hook, fetched, pushed


def test_temporary_credentials_are_fetched_again_only_within_the_margin(monkeypatch):
    hook, fetched, pushed = _hook(monkeypatch, [NOW + timedelta(minutes=40), NOW + timedelta(minutes=70)])
    first = hook.fresh_s3_settings(now=NOW)
    assert (first.session_token, len(fetched)) == ("token0", 1)
    assert hook.fresh_s3_settings(now=NOW + timedelta(minutes=20)) is first  # 20 min left: kept
    hook._client = object()  # a connected cloud gets the new ones
    second = hook.fresh_s3_settings(now=NOW + timedelta(minutes=26))  # 14 min left: within 15
    assert (second.session_token, len(fetched), pushed) == ("token1", 2, [second])
    assert hook.fresh_s3_settings(CREDENTIALS_MARGIN, now=NOW + timedelta(minutes=50)) is second


def test_static_keys_are_never_fetched_again(monkeypatch):
    hook, fetched, _ = _hook(monkeypatch, [None])
    hook.fresh_s3_settings(now=NOW)
    assert hook.fresh_s3_settings(timedelta(days=365), now=NOW + timedelta(days=300)) is fetched[0]


def test_the_token_reaches_boto3_and_stays_out_of_reprs():
    s3 = S3Settings(endpoint_url="http://127.0.0.1:9", access_key="ASIAX", secret_key="sk", session_token="tok",
                    expires_at=NOW)
    creds = s3.client()._request_signer._credentials
    assert (creds.access_key, creds.secret_key, creds.token) == ("ASIAX", "sk", "tok")
    assert "sk" not in repr(s3) and "tok" not in repr(s3)
    assert s3.secrets == ["sk", "tok"]


def test_the_provider_connection_gives_token_and_expiry(monkeypatch):
    """H2OHook.s3_settings reads the amazon provider's session: frozen keys + token, and the end of
    refreshable credentials (an assume-role); static keys have no end."""
    from botocore.credentials import Credentials, RefreshableCredentials

    from h2o_airflow.hooks import h2o as hooks

    end = NOW + timedelta(hours=1)
    refreshable = RefreshableCredentials("ASIAR", "rs", "rt", end, lambda: {}, "assume-role")
    for creds, expected in ((refreshable, ("ASIAR", "rs", "rt", end)), (Credentials("AKIA", "s"), ("AKIA", "s", "", None))):
        class Session:
            def get_credentials(self, creds=creds):
                return creds

        class FakeS3Hook:
            def __init__(self, aws_conn_id):
                from types import SimpleNamespace

                self.conn_config = SimpleNamespace(region_name="eu-west-1",
                                                   get_service_endpoint_url=lambda name: "http://s3.local")

            def get_session(self, region_name=None):
                return Session()

        monkeypatch.setattr("airflow.providers.amazon.aws.hooks.s3.S3Hook", FakeS3Hook)
        monkeypatch.setattr(refreshable, "refresh_needed", lambda refresh_in=None: False)
        s3 = hooks.H2OHook(aws_conn_id="aws_role").s3_settings()
        assert (s3.access_key, s3.secret_key, s3.session_token, s3.expires_at) == expected
        assert (s3.endpoint_url, s3.region) == ("http://s3.local", "eu-west-1")


def test_a_cluster_whose_pods_read_a_secret_gets_no_credentials_over_rest(monkeypatch):
    """cluster.s3_secret: the nodes have their S3 credentials from the Secret; the hook connects
    without sending any (the task's own boto3 still uses the connection's)."""
    from kubernetes import client

    from h2o_tasks import session
    from h2o_tasks.cluster import ClusterInfo
    from h2o_tasks.cluster.base import ClusterSpec
    from h2o_tasks.cluster.kubernetes import KubernetesBackend
    from h2o_tasks.config import ClusterConfig

    connected = []
    monkeypatch.setattr(session, "connect", lambda url, s3=None, verbose=False, login=None: connected.append(s3))
    for from_secret, expected in ((True, None), (False, "token0")):
        info = ClusterInfo("c", "kubernetes", url="http://10.0.0.1:54321", endpoint_mode="pod-ip",
                           s3_from_secret=from_secret)
        now = datetime.now(UTC)
        hook, fetched, pushed = _hook(monkeypatch, [now + timedelta(hours=1), now + timedelta(hours=2)])
        hook.cluster = info
        hook._backend = SimpleNamespace(login=lambda info: None)  # no API server here: a cluster without a login
        hook.get_conn()
        got = connected.pop()
        assert (got.session_token if got else None) == expected
        # 10 minutes left: fetched again, and pushed to the cloud only when it has no Secret
        hook.fresh_s3_settings(now=now + timedelta(minutes=50))
        assert pushed == ([] if from_secret else [fetched[-1]])

    # the Kubernetes backend records it from the pipeline's cluster.s3_secret
    backend = KubernetesBackend(client.ApiClient(), namespace="ml")
    monkeypatch.setattr(backend, "_read_sts", lambda name, ns: None)
    monkeypatch.setattr(backend, "_apply_all", lambda spec: {})
    spec = ClusterSpec.for_run("p", "d", "r", ClusterConfig(backend="kubernetes", namespace="ml", s3_secret="s3-creds"))
    assert backend.create(spec).s3_from_secret is True
