"""The test bed's pod network bookkeeping: slots per session, addresses handed out round robin."""

from testbed.network import PodNetwork


def test_addresses_are_not_reused_right_after_a_pod_is_gone():
    net = PodNetwork(tag="x", subnet="10.0.0.0/29")  # hosts .1 (bridge) to .6
    first = [net._next_ip() for _ in range(1)]
    net.allocated["a"] = first[0]
    net.allocated["b"] = net._next_ip()
    del net.allocated["a"]  # .2 is free again, but the next pod gets .4
    assert (first[0], net.allocated["b"], net._next_ip()) == ("10.0.0.2", "10.0.0.3", "10.0.0.4")
    net.allocated.update({"c": "10.0.0.4", "d": "10.0.0.5", "e": "10.0.0.6"})
    assert net._next_ip() == "10.0.0.2"  # wraps around to the freed address


def test_two_sessions_claim_disjoint_slots(tmp_path):
    a, b = PodNetwork.claim(lock_dir=tmp_path), PodNetwork.claim(lock_dir=tmp_path)
    try:
        assert a.tag != b.tag and a.subnet != b.subnet and a.host_ip != b.host_ip
        a.release()
        c = PodNetwork.claim(lock_dir=tmp_path)  # a released slot is claimed again
        assert c.tag == a.tag
        c.release()
    finally:
        a.release()
        b.release()


def test_a_slot_left_by_a_crashed_session_is_cleaned_when_claimed_again():
    """A session killed with pods up leaves their namespaces; the next bed in that slot starts clean."""
    import secrets
    from pathlib import Path

    tag = f"tz{secrets.token_hex(2)}"
    crashed = PodNetwork(tag=tag, subnet="10.243.9.0/24", link_subnet="10.243.254.0/30")
    again = PodNetwork(tag=tag, subnet="10.243.9.0/24", link_subnet="10.243.254.0/30")
    try:
        crashed.create()
        pods = [crashed.add_pod(uid, ["h2o.svc.cluster.local"])[0] for uid in ("a", "b")]
        assert sorted(again.leftovers()) == sorted(pods)  # the new session knows nothing of them but their tag
        again.create()
        assert again.leftovers() == [] and not any((Path("/etc/netns") / ns).exists() for ns in pods)
    finally:
        again.destroy()
        crashed.destroy()
    assert again.leftovers() == []
