"""The test bed's ClusterIP routing: a Service's address and port lead to its ready endpoints only."""

from testbed.serviceproxy import build_routes


def service(name, cluster_ip="10.96.0.10", ports=({"name": "api", "port": 54321, "targetPort": 54321},)):
    return {"metadata": {"name": name, "namespace": "h2o"}, "spec": {"clusterIP": cluster_ip, "ports": list(ports)}}


def endpoint_slice(svc, eps, ports=({"name": "api", "port": 54321},), namespace="h2o"):
    return {"metadata": {"name": svc + "-abc", "namespace": namespace, "labels": {"kubernetes.io/service-name": svc}},
            "ports": list(ports),
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in eps]}


def test_a_cluster_ip_leads_to_the_ready_endpoints_only():
    routes = build_routes([service("h")], [endpoint_slice("h", [("10.244.7.2", False), ("10.244.7.3", True)])])
    assert routes == {("10.96.0.10", 54321): [("10.244.7.3", 54321)]}  # the leader: the only Ready pod


def test_a_service_with_no_ready_endpoint_still_listens_and_refuses():
    assert build_routes([service("h")], [endpoint_slice("h", [("10.244.7.2", False)])]) == {("10.96.0.10", 54321): []}
    assert build_routes([service("h")], []) == {("10.96.0.10", 54321): []}


def test_the_target_port_is_the_slices_port_of_the_same_name_and_other_services_are_apart():
    svc = service("h", ports=[{"name": "api", "port": 80, "targetPort": "http"}, {"name": "dbg", "port": 81}])
    slices = [endpoint_slice("h", [("10.244.7.3", True)], ports=[{"name": "api", "port": 54321}]),
              endpoint_slice("other", [("10.244.7.9", True)]),
              endpoint_slice("h", [("10.244.7.8", True)], namespace="elsewhere")]
    assert build_routes([svc], slices) == {("10.96.0.10", 80): [("10.244.7.3", 54321)], ("10.96.0.10", 81): []}


def test_headless_services_have_no_route():
    assert build_routes([service("h-nodes", cluster_ip="None")], [endpoint_slice("h-nodes", [("10.244.7.2", True)])]) == {}
