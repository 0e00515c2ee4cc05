"""Test harness shared by the three test folders.

- ``tests/core``: pure computation on arrays and files; no database, no
  ``fiftyone`` import. Its ``core_package`` fixture is this repository's
  ``core/`` imported on its own.
- ``tests/integration``: the real plugin, loaded through FiftyOne's plugin
  system, against a private ``mongod`` (see :mod:`harness`), which its
  ``conftest.py`` starts before any of its modules imports ``fiftyone``.
- ``tests/e2e``: the App in headless Chromium, against the same database.

Helper modules of this folder (``harness``, ``llm_server``, ``synthetic``,
``near_duplicates``)
are importable by name from every test module.
"""

import importlib
import importlib.util
import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_test_module(name):
    """Makes a helper module of tests/ importable by name (tests/ is not a
    package, and pytest runs in importlib mode)."""
    path = os.path.join(HERE, name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load_test_module("harness")
_load_test_module("llm_server")
_load_test_module("synthetic")
_load_test_module("near_duplicates")


def pytest_unconfigure(config):
    harness.stop()


@pytest.fixture(scope="session")
def test_env():
    """Environment variables that point a subprocess at the test database
    and plugins directory."""
    env = dict(os.environ)
    env.update(harness.TEST_ENV)
    return env


@pytest.fixture(scope="session")
def plugin():
    """The plugin's package, loaded through FiftyOne's plugin system."""
    import fiftyone.operators as foo
    import fiftyone.plugins as fop

    names = [p.name for p in fop.list_plugins()]
    assert harness.PLUGIN_NAME in names, names
    foo.get_operator(f"{harness.PLUGIN_NAME}/compute_clusters")
    return importlib.import_module(harness.PLUGIN_MODULE)


@pytest.fixture(scope="session")
def api(plugin):
    """The plugin's Python API module (the one its operators use)."""
    return importlib.import_module(harness.PLUGIN_MODULE + ".api")


@pytest.fixture(scope="session")
def runs(plugin):
    """The plugin's run storage module."""
    return importlib.import_module(harness.PLUGIN_MODULE + ".runs")


@pytest.fixture
def dataset_name(request):
    """A unique dataset name, deleted after the test."""
    import fiftyone as fo

    name = f"{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    yield name
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
