# The control-plane fixture for e2e tests. Imported, not `pytest_plugins = ["tests.fixtures.k8s"]`:
# pytest refuses pytest_plugins in a conftest below the rootdir when the whole suite is collected
# ("Defining 'pytest_plugins' in a non-top-level conftest is no longer supported").
from tests.fixtures.k8s import control_plane  # noqa: F401
