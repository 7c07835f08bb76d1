# The e2e fixtures (control_plane, k8s_bed) are registered once, in tests/conftest.py: a
# session fixture imported into several modules would be set up once per module.
