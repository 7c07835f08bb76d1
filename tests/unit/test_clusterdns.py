"""The test bed's cluster DNS answers like the cluster DNS: SRV + A for headless Services."""

from dnslib import QTYPE, DNSRecord

from testbed.clusterdns import ClusterDNS, build_records

DOMAIN = "cluster.local"


def service(name, headless=True, publish=True):
    return {"metadata": {"name": name, "namespace": "h2o"},
            "spec": {"clusterIP": "None" if headless else "10.96.0.10", "publishNotReadyAddresses": publish}}


def endpoint_slice(svc, eps):
    return {"metadata": {"name": svc + "-abc", "namespace": "h2o", "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": "api", "port": 54321}],
            "endpoints": [{"addresses": [ip], "hostname": host, "conditions": {"ready": ready}}
                          for ip, host, ready in eps]}


EPS = [("10.244.7.2", "h-0", False), ("10.244.7.3", "h-1", True)]


def test_headless_service_has_srv_and_a_records_including_not_ready():
    rec = build_records([service("h-nodes")], [endpoint_slice("h-nodes", EPS)], DOMAIN)
    fqdn = "h-nodes.h2o.svc.cluster.local"
    assert sorted(rec.a[fqdn]) == ["10.244.7.2", "10.244.7.3"]
    assert sorted(t for _, t in rec.srv[fqdn]) == [f"h-0.{fqdn}", f"h-1.{fqdn}"]
    assert rec.a[f"h-0.{fqdn}"] == ["10.244.7.2"]


def test_not_ready_addresses_hidden_without_publish_flag():
    rec = build_records([service("h-nodes", publish=False)], [endpoint_slice("h-nodes", EPS)], DOMAIN)
    assert rec.a["h-nodes.h2o.svc.cluster.local"] == ["10.244.7.3"]


def test_cluster_ip_service_and_wire_answers():
    dns = ClusterDNS(api_client=None, listen=("127.0.0.1", 0))
    dns.records = build_records([service("h-nodes"), service("h", headless=False)],
                                [endpoint_slice("h-nodes", EPS)], DOMAIN)
    srv = DNSRecord.parse(dns.answer(DNSRecord.question("h-nodes.h2o.svc.cluster.local", "SRV").pack()))
    assert len(srv.rr) == 2 and all(r.rtype == QTYPE.SRV for r in srv.rr)
    assert {str(r.rdata) for r in srv.ar} == {"10.244.7.2", "10.244.7.3"}
    a = DNSRecord.parse(dns.answer(DNSRecord.question("h.h2o.svc.cluster.local", "A").pack()))
    assert [str(r.rdata) for r in a.rr] == ["10.96.0.10"]
    missing = DNSRecord.parse(dns.answer(DNSRecord.question("example.com", "A").pack()))
    assert missing.header.rcode == 3  # NXDOMAIN
