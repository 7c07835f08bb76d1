"""The test bed's node agent reads a pod's securityContext as a container runtime would."""

from testbed.nodeagent import Security


def test_the_containers_settings_win_over_the_pods():
    pod = {"spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                        "fsGroup": 2000}}}
    container = {"securityContext": {"runAsUser": 10002, "allowPrivilegeEscalation": False,
                                     "readOnlyRootFilesystem": True, "capabilities": {"drop": ["all"]}}}
    sec = Security.of(pod, container)
    assert sec == Security(uid=10002, gid=10001, fs_group=2000, non_root=True, read_only_root=True,
                           no_new_privs=True, drop_all=True)
    assert sec.refusal() == ""
    argv = sec.wrap(["java", "-jar", "h2o.jar"], ["/pods/1/volumes/data"])
    # a private mount namespace: the writable volume bound onto itself, the root read-only, then the user
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert argv[7] == 'mount --bind "/pods/1/volumes/data" "/pods/1/volumes/data" && ' \
                      'mount -o remount,bind,ro / && exec "$@"'
    user = argv[argv.index("setpriv"):]
    assert user == ["setpriv", "--reuid", "10002", "--regid", "10001", "--groups", "2000,10001", "--no-new-privs",
                    "--inh-caps", "-all", "--bounding-set", "-all", "--", "java", "-jar", "h2o.jar"]


def test_run_as_non_root_without_a_user_is_refused_and_no_context_changes_nothing():
    assert Security.of({"spec": {"securityContext": {"runAsNonRoot": True}}}, {}).refusal() == \
        "container has runAsNonRoot and image will run as root"
    assert Security.of({"spec": {}}, {}).wrap(["java"], []) == ["java"]
