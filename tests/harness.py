"""The test database and plugins directory, started on first need.

FiftyOne reads its configuration when it is first imported, so
:func:`start` runs before any test module that imports ``fiftyone`` is
collected (``tests/integration/conftest.py`` and ``tests/e2e/conftest.py``
call it; ``tests/core`` never does):

- a private ``mongod`` on a free port with a temporary data directory
  (``FIFTYONE_DATABASE_DIR`` alone is not isolation: a new process attaches
  to any FiftyOne database already running on the machine);
- a temporary plugins directory holding a link to this repository, so the
  plugin is loaded through FiftyOne's own plugin system;
- offline switches for model hubs and analytics.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_NAME = "@curate/clustering"
PLUGIN_MODULE = "fiftyone.plugins.orgs.curate.clustering"

# Environment variables that point FiftyOne (and subprocesses) at the test
# database and plugins directory; filled by start()
TEST_ENV = {}
_STATE = {}


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


def _start_mongod(tmp):
    port = _free_port()
    dbpath = os.path.join(tmp, "db")
    os.makedirs(dbpath)
    log = open(os.path.join(tmp, "mongod.log"), "w")
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


def started():
    """Whether this test session started the database."""
    return "mongod" in _STATE


def start():
    """Starts the private database and links the plugin, once per test
    session, and points this process's environment at them."""
    if started():
        return
    if "fiftyone" in sys.modules:
        raise RuntimeError("fiftyone was imported before the test harness")
    tmp = tempfile.mkdtemp(prefix="curate-tests-")
    plugins_dir = os.path.join(tmp, "plugins")
    os.makedirs(plugins_dir)
    os.symlink(REPO, os.path.join(plugins_dir, "curate-clustering"))
    proc, port = _start_mongod(tmp)
    _STATE.update(mongod=proc, tmp=tmp)
    TEST_ENV.update(
        {
            "FIFTYONE_DATABASE_URI": f"mongodb://127.0.0.1:{port}",
            "FIFTYONE_DATABASE_NAME": f"curate-test-{uuid.uuid4().hex[:8]}",
            "FIFTYONE_DATABASE_VALIDATION": "false",
            "FIFTYONE_DO_NOT_TRACK": "true",
            "FIFTYONE_PLUGINS_DIR": plugins_dir,
            "FIFTYONE_DATABASE_ADMIN": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    os.environ.update(TEST_ENV)


def stop():
    """Stops the database and removes the temporary folder, if started."""
    proc = _STATE.pop("mongod", None)
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(_STATE.pop("tmp"), ignore_errors=True)


# The opening of a script for :func:`run_script`: the plugin loaded through
# FiftyOne's plugin system; its modules ``api``, ``data`` and ``runs``
# (``M`` names the package); ``die()``, which kills the process (SIGKILL);
# and ``die_instead`` / ``die_after(module, name)``, which make the named
# function kill the process instead of running, or once it has returned.
PLUGIN_SCRIPT = r"""
import importlib, json, os, signal, sys, threading, time
import fiftyone as fo
import fiftyone.operators as foo

foo.get_operator("@curate/clustering/compute_clusters")
M = "fiftyone.plugins.orgs.curate.clustering"
api = importlib.import_module(M + ".api")
data = importlib.import_module(M + ".data")
runs = importlib.import_module(M + ".runs")

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def die_instead(module, name):
    setattr(module, name, die)

def die_after(module, name):
    real = getattr(module, name)
    def call_then_die(*args, **kwargs):
        real(*args, **kwargs)
        die()
    setattr(module, name, call_then_die)
"""


def run_script(script, *args, env, expect=0, timeout=300):
    """Runs the Python source ``script`` with ``args`` in a fresh process
    (``env``: :data:`TEST_ENV` over the caller's environment); fails the
    test, with the process's stderr, unless it exits with ``expect``
    (``-signal.SIGKILL`` for a process that kills itself at a chosen
    moment). Returns the completed process."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == expect, proc.stderr[-3000:]
    return proc
