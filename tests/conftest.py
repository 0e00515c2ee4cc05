"""Test harness: a private mongod per test session, and the real plugin.

FiftyOne reads its configuration when it is first imported, so everything
here happens before any test module imports ``fiftyone``:

- a private ``mongod`` on a free port with a temporary data directory
  (``FIFTYONE_DATABASE_DIR`` alone is not isolation: a new process attaches
  to any FiftyOne database already running on the machine);
- a temporary plugins directory holding a link to this repository, so the
  plugin is loaded through FiftyOne's own plugin system;
- offline switches for model hubs and analytics.
"""

import importlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_NAME = "@curate/clustering"
PLUGIN_MODULE = "fiftyone.plugins.orgs.curate.clustering"

_TMP = tempfile.mkdtemp(prefix="curate-tests-")
PLUGINS_DIR = os.path.join(_TMP, "plugins")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mongod_path():
    spec = importlib.util.find_spec("fiftyone")
    path = os.path.join(os.path.dirname(spec.origin), "db", "bin", "mongod")
    if not os.path.isfile(path):
        found = shutil.which("mongod")
        if found is None:
            raise RuntimeError(
                f"No mongod at {path} nor on PATH; run `make install`"
            )
        path = found
    return path


def _start_mongod():
    port = _free_port()
    dbpath = os.path.join(_TMP, "db")
    os.makedirs(dbpath)
    log = open(os.path.join(_TMP, "mongod.log"), "w")
    proc = subprocess.Popen(
        [
            _mongod_path(),
            "--dbpath",
            dbpath,
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--nounixsocket",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 30
    while True:
        if proc.poll() is not None:
            with open(log.name) as f:
                tail = f.read()[-2000:]
            raise RuntimeError(f"mongod exited at start:\n{tail}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError("mongod did not open its port in 30 s")
            time.sleep(0.05)


def _load_test_module(name):
    """Makes a helper module of tests/ importable by name (tests/ is not a
    package, and pytest runs in importlib mode)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    spec = importlib.util.spec_from_file_location(name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name[:-3]] = module
    spec.loader.exec_module(module)


def _link_plugin():
    os.makedirs(PLUGINS_DIR)
    os.symlink(REPO, os.path.join(PLUGINS_DIR, "curate-clustering"))


if "fiftyone" in sys.modules:
    raise RuntimeError("fiftyone was imported before the test harness ran")

MONGOD, MONGO_PORT = _start_mongod()
_link_plugin()
_load_test_module("llm_server.py")
TEST_ENV = {
    "FIFTYONE_DATABASE_URI": f"mongodb://127.0.0.1:{MONGO_PORT}",
    "FIFTYONE_DATABASE_NAME": f"curate-test-{uuid.uuid4().hex[:8]}",
    "FIFTYONE_DATABASE_VALIDATION": "false",
    "FIFTYONE_DO_NOT_TRACK": "true",
    "FIFTYONE_PLUGINS_DIR": PLUGINS_DIR,
    "FIFTYONE_DATABASE_ADMIN": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(TEST_ENV)


def pytest_unconfigure(config):
    MONGOD.terminate()
    try:
        MONGOD.wait(10)
    except subprocess.TimeoutExpired:
        MONGOD.kill()
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def test_env():
    """Environment variables that point a subprocess at the test database
    and plugins directory."""
    env = dict(os.environ)
    env.update(TEST_ENV)
    return env


@pytest.fixture(scope="session")
def plugin():
    """The plugin's package, loaded through FiftyOne's plugin system."""
    import fiftyone.operators as foo
    import fiftyone.plugins as fop

    names = [p.name for p in fop.list_plugins()]
    assert PLUGIN_NAME in names, names
    foo.get_operator(f"{PLUGIN_NAME}/compute_clusters")
    return importlib.import_module(PLUGIN_MODULE)


@pytest.fixture(scope="session")
def api(plugin):
    """The plugin's Python API module (the one its operators use)."""
    return importlib.import_module(PLUGIN_MODULE + ".api")


@pytest.fixture(scope="session")
def runs(plugin):
    """The plugin's run storage module."""
    return importlib.import_module(PLUGIN_MODULE + ".runs")


@pytest.fixture
def dataset_name(request):
    """A unique dataset name, deleted after the test."""
    import fiftyone as fo

    name = f"{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    yield name
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
