"""Rendered Kubernetes objects: valid against the real schemas, and saying what the design needs."""

import json

import kubernetes_validate
import pytest

from h2o_tasks import config
from h2o_tasks.cluster import manifests
from h2o_tasks.cluster.base import ClusterSpec
from tests.fixtures.pipelines import EXAMPLE

SUPPORTED = ("1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0")


@pytest.fixture(scope="module")
def rendered():
    cfg = config.load(EXAMPLE).with_overrides(cluster={"backend": "kubernetes", "replicas": 3, "memory": "3g",
                                                       "s3_secret": "h2o-s3"})
    spec = ClusterSpec.for_run(cfg.name, "h2o_train__arrival-delay", "scheduled__2013-02-04T00:00:00+00:00",
                               cfg.cluster, s3_endpoint="http://minio.storage:9000")
    return {m.kind + ("-headless" if m.name.endswith("-nodes") else ""): m for m in manifests.render(spec)}, spec


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_object_validates_strictly(rendered, version):
    objs, _ = rendered
    assert set(objs) == {"Job", "StatefulSet", "Service", "Service-headless", "PodDisruptionBudget", "NetworkPolicy"}
    for m in objs.values():
        kubernetes_validate.validate(m.body, version, strict=True)


def test_statefulset_follows_h2o_kubernetes_rules(rendered):
    objs, spec = rendered
    sts = objs["StatefulSet"].body
    assert sts["spec"]["podManagementPolicy"] == "Parallel" and sts["spec"]["replicas"] == 3
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["H2O_KUBERNETES_SERVICE_DNS"] == f"{spec.name}-nodes.h2o.svc.cluster.local"
    assert env["H2O_NODE_EXPECTED_COUNT"] == "3"
    assert c["readinessProbe"]["httpGet"]["path"] == "/kubernetes/isLeaderNode"
    assert c["resources"]["requests"] == c["resources"]["limits"]
    assert c["resources"]["limits"]["memory"] == "4096Mi"  # 3g heap at MaxRAMPercentage=75
    assert "-XX:MaxRAMPercentage=75" in c["command"]
    assert c["command"].index("-XX:TieredStopAtLevel=1") < c["command"].index("-jar")  # cluster.jvm_options
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/data", "/tmp", "/etc/h2o-login"}
    # the REST login: every node reads the hash from the run's Secret, mounted read-only; no password here
    (login,) = [v for v in pod["volumes"] if "secret" in v]
    assert login["secret"] == {"secretName": f"{spec.name}-login", "defaultMode": 0o440,
                               "items": [{"key": "realm.properties", "path": "realm.properties"}]}
    assert next(m for m in c["volumeMounts"] if m["name"] == "login")["readOnly"] is True
    at = c["command"].index("-hash_login")
    assert c["command"][at + 1 : at + 3] == ["-login_conf", "/etc/h2o-login/realm.properties"]
    assert sts["metadata"]["annotations"][manifests.EXPIRES_ANNOTATION] == spec.expires_at.isoformat()
    assert sts["metadata"]["annotations"][manifests.RUN_ID_ANNOTATION] == "scheduled__2013-02-04T00:00:00+00:00"
    # the pods carry no expiry: extending it patches the StatefulSet, never rolls the pods
    assert manifests.EXPIRES_ANNOTATION not in sts["spec"]["template"]["metadata"]["annotations"]
    assert sts["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "h2o-airflow"


def test_the_anchor_job_carries_the_clusters_ceiling_and_runs_no_pod(rendered):
    objs, spec = rendered
    job = objs["Job"].body
    assert job["metadata"]["name"] == manifests.anchor_name(spec.name)
    assert job["spec"]["parallelism"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 0
    deadline = job["spec"]["activeDeadlineSeconds"]
    assert abs(deadline - 720 * 60) <= 5  # cluster.max_run_minutes, counted from now
    assert job["metadata"]["labels"] == objs["StatefulSet"].body["metadata"]["labels"]  # deleted with the cluster
    assert manifests.render(spec)[0].kind == "Job"  # applied first: the others are owned by it


def test_services_and_policies(rendered):
    objs, _spec = rendered
    headless = objs["Service-headless"].body["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    client = objs["Service"].body["spec"]
    assert "publishNotReadyAddresses" not in client and client["ports"][0]["port"] == 54321
    assert objs["PodDisruptionBudget"].body["spec"]["maxUnavailable"] == 0
    ingress = objs["NetworkPolicy"].body["spec"]["ingress"]
    assert ingress[1]["from"][0]["podSelector"]["matchLabels"] == {"tier": "airflow"}


def test_no_secret_value_in_any_manifest(monkeypatch):
    """The create task holds the S3 connection's keys and session token (and a worker's environment may
    hold others); the manifests it renders from them name the Secret of cluster.s3_secret, never a value."""
    from h2o_airflow.hooks.h2o import H2OHook

    conn = {"access": "AKIAIOSFODNN7CONNKEY", "secret": "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",
            "token": "FwoGZXIvYXdzEConnSessionToken"}
    ambient = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7ENVKEY0", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/ENVSECRET",
               "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEEnvSessionToken"}
    for var, value in ambient.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_MANIFEST_TEST", json.dumps({
        "conn_type": "aws", "login": conn["access"], "password": conn["secret"],
        "extra": {"endpoint_url": "http://minio.storage:9000", "region_name": "eu-west-1",
                  "aws_session_token": conn["token"]}}))
    s3 = H2OHook(aws_conn_id="aws_manifest_test").s3_settings()
    assert (s3.access_key, s3.secret_key, s3.session_token) == (conn["access"], conn["secret"], conn["token"])
    for s3_secret in ("h2o-s3", ""):
        cfg = config.load(EXAMPLE).with_overrides(cluster={"backend": "kubernetes", "s3_secret": s3_secret})
        # as the create task builds it: the spec takes the endpoint from the S3 settings
        spec = ClusterSpec.for_run(cfg.name, "h2o_train__arrival-delay", "manual__1", cfg.cluster,
                                   s3_endpoint=s3.endpoint_url)
        text = "".join(m.text for m in manifests.render(spec))
        assert "-Dsys.ai.h2o.persist.s3.endPoint=http://minio.storage:9000" in text
        assert ("secretKeyRef" in text and '"h2o-s3"' in text) == bool(s3_secret)  # by reference only
        for value in [*conn.values(), *ambient.values()]:
            assert value not in text, (s3_secret, value)


def test_the_client_url_uses_the_pipelines_cluster_domain(monkeypatch):
    """cluster.cluster_domain reaches the client Service's URL (discovery already used it), from the
    operator's backend and from the spec of the cluster being created."""
    from kubernetes import client

    from h2o_airflow import backends
    from h2o_airflow.operators.base import H2OPipelineOperator
    from h2o_tasks.cluster.kubernetes import KubernetesBackend
    from h2o_tasks.config import ClusterConfig

    backend = KubernetesBackend(client.ApiClient(), namespace="ml")
    info = backend._info("h2o-x", "ml", 2, {}, "corp.internal")
    assert info.url == "http://h2o-x.ml.svc.corp.internal:54321"
    assert backend._info("h2o-x", "ml", 2, {}).url == "http://h2o-x.ml.svc.cluster.local:54321"

    seen = {}
    monkeypatch.setattr(backends, "backend_for", lambda name, **kw: seen.update(kw) or backend)
    cfg = type("Cfg", (), {"cluster": ClusterConfig(backend="kubernetes", cluster_domain="corp.internal")})()
    H2OPipelineOperator(task_id="t", pipeline="p.yaml").backend(cfg)
    assert seen["cluster_domain"] == "corp.internal"


def _with_ingress(**ingress):
    cfg = config.load(EXAMPLE).with_overrides(cluster={"backend": "kubernetes", "ingress": ingress})
    spec = ClusterSpec.for_run(cfg.name, "h2o_train__arrival-delay", "manual__1", cfg.cluster)
    return {m.kind: m.body for m in manifests.render(spec)}, spec


@pytest.mark.parametrize("version", SUPPORTED)
def test_an_ingress_opens_flow_from_outside_the_cluster(version):
    objs, spec = _with_ingress(host="flow-{cluster}.ml.example.com", class_name="nginx", tls_secret="wildcard-ml",
                               annotations={"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"})
    ingress = objs["Ingress"]
    kubernetes_validate.validate(ingress, version, strict=True)
    host = f"flow-{spec.name}.ml.example.com"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == host and ingress["spec"]["ingressClassName"] == "nginx"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": spec.name, "port": {"number": 54321}}
    assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": "wildcard-ml"}]
    # the controller's settings, and the run's ids (the janitor and the delete find it by the labels)
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert ingress["metadata"]["labels"] == objs["StatefulSet"]["metadata"]["labels"]
    # the NetworkPolicy lets the controller's namespace reach the API port
    froms = [r["from"][0] for r in objs["NetworkPolicy"]["spec"]["ingress"]]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in froms
    kubernetes_validate.validate(objs["NetworkPolicy"], version, strict=True)


def test_without_an_ingress_none_is_rendered_and_a_host_must_name_the_cluster():
    objs, _ = _with_ingress(host="{cluster}.h2o.example.com")
    assert "tls" not in objs["Ingress"]["spec"] and "ingressClassName" not in objs["Ingress"]["spec"]
    cfg = config.load(EXAMPLE).with_overrides(cluster={"backend": "kubernetes"})
    spec = ClusterSpec.for_run(cfg.name, "d", "r", cfg.cluster)
    assert "Ingress" not in {m.kind for m in manifests.render(spec)}
    with pytest.raises(config.ConfigError, match=r"cluster\.ingress\.host.*\{cluster\}"):
        config.load(EXAMPLE).with_overrides(cluster={"backend": "kubernetes", "ingress": {"host": "h2o.example.com"}})


@pytest.mark.parametrize("version", SUPPORTED)
def test_tls_gives_h2o_its_keystore_from_a_secret_and_its_password_from_the_environment(version):
    cfg = config.load(EXAMPLE).with_overrides(cluster={"backend": "kubernetes", "tls": {
        "secret": "h2o-tls", "keystore": "keystore.jks", "password_secret": "h2o-tls-password"}})
    spec = ClusterSpec.for_run(cfg.name, "h2o_train__arrival-delay", "manual__1", cfg.cluster)
    sts = next(m.body for m in manifests.render(spec) if m.kind == "StatefulSet")
    kubernetes_validate.validate(sts, version, strict=True)
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[command.index("-jks") + 1] == f"{manifests.TLS_DIR}/keystore.jks"
    assert command[command.index("-jks_pass") + 1] == f"$({manifests.TLS_PASSWORD_ENV})"  # never the value
    env = {e["name"]: e for e in container["env"]}
    assert env[manifests.TLS_PASSWORD_ENV]["valueFrom"] == {"secretKeyRef": {"name": "h2o-tls-password",
                                                                             "key": "password"}}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == manifests.TLS_DIR)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert mount["readOnly"] and volume["secret"]["secretName"] == "h2o-tls"
    assert volume["secret"]["items"] == [{"key": "keystore.jks", "path": "keystore.jks"}]
    plain = next(m.body for m in manifests.render(ClusterSpec.for_run(
        cfg.name, "d", "manual__1", cfg.with_overrides(cluster={"tls": None}).cluster)) if m.kind == "StatefulSet")
    assert "-jks" not in plain["spec"]["template"]["spec"]["containers"][0]["command"]


def test_the_node_agent_expands_variables_in_the_command_as_the_kubelet_does():
    from testbed.nodeagent import expand

    env = {"H2O_KEYSTORE_PASSWORD": "p$w", "EMPTY": ""}
    assert expand("$(H2O_KEYSTORE_PASSWORD)", env) == "p$w"
    assert expand("x=$(EMPTY)y", env) == "x=y"
    assert expand("$(UNSET)", env) == "$(UNSET)"  # left as written, as Kubernetes does
    assert expand("$$(H2O_KEYSTORE_PASSWORD)", env) == "$(H2O_KEYSTORE_PASSWORD)"  # escaped
