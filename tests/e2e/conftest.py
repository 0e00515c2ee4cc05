"""These tests need the database: start it before any module here imports
fiftyone (see tests/harness.py). The fixtures that the browser tests share:
Chromium, Playwright and the App server.

The tests install what they need: Debian's ``chromium`` (and Node.js) with
apt-get when missing and permitted, and the npm package ``playwright-core``
(version pinned in ``tests/e2e/package.json``) into a cache folder
(``$CURATE_E2E_CACHE``, default ``~/.cache/curate-clustering/e2e``). They
are skipped, with the reason, only where Chromium or Node.js cannot be
installed.
"""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import harness  # noqa: E402 (made importable by tests/conftest.py)

harness.start()

E2E = os.path.dirname(os.path.abspath(__file__))


def _load_helper(name):
    """Makes a helper module of this folder importable by name (pytest
    runs in importlib mode); after the database started, as it imports
    fiftyone."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(E2E, name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


browser_driver = _load_helper("browser_driver")


def _apt_install(*packages):
    """Installs Debian packages if this process may; returns whether it
    tried."""
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", *packages]
    ok = subprocess.run(cmd, env=env, capture_output=True, timeout=900)
    if ok.returncode != 0:
        subprocess.run(
            ["apt-get", "update", "-q"],
            env=env,
            capture_output=True,
            timeout=600,
        )
        subprocess.run(cmd, env=env, capture_output=True, timeout=900)
    return True


def _find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium_path():
    path = _find_chromium()
    if path is None and _apt_install("chromium"):
        path = _find_chromium()
    if path is None:
        pytest.skip(
            "Chromium is not installed and cannot be installed here "
            "(`apt-get install -y chromium` needs root and Debian's "
            "package lists)"
        )
    return path


@pytest.fixture(scope="session")
def playwright_dir():
    """A folder whose node_modules holds the pinned playwright-core."""
    if not (shutil.which("node") and shutil.which("npm")):
        _apt_install("nodejs", "npm")
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip(
            "Node.js and npm are not installed and cannot be installed "
            "here (`apt-get install -y nodejs npm` needs root)"
        )
    cache = os.environ.get("CURATE_E2E_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "curate-clustering", "e2e"
    )
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(E2E, "package.json")) as f:
        wanted = json.load(f)["dependencies"]["playwright-core"]
    installed = os.path.join(
        cache, "node_modules", "playwright-core", "package.json"
    )
    version = None
    if os.path.isfile(installed):
        with open(installed) as f:
            version = json.load(f).get("version")
    if version != wanted:
        shutil.copy(os.path.join(E2E, "package.json"), cache)
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, (
            "npm install of playwright-core failed:\n" + proc.stderr[-3000:]
        )
    return cache


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_server(test_env, tmp_path):
    """The FiftyOne App server on 127.0.0.1, on the test database."""
    port = _free_port()
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fiftyone.server.main",
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=test_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    "The App server exited:\n" + log_path.read_text()[-3000:]
                )
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(
                        "The App server did not answer in 90 s:\n"
                        + log_path.read_text()[-3000:]
                    )
                time.sleep(0.3)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture
def browser(tmp_path, chromium_path, playwright_dir, app_server):
    """Runs a browser driver on a dataset in the App:
    ``browser(script, ds, timeout, **config)`` returns the driver's report
    and a text for failures (see ``browser_driver.drive``); ``config``
    adds to what every driver gets (the dataset's url, Chromium,
    Playwright, the output folder and the number of samples)."""
    url, server_log = app_server
    out = tmp_path / "shots"
    out.mkdir()

    def run(script, ds, timeout, **config):
        config = dict(
            url=f"{url}/datasets/{ds.name}",
            playwrightDir=playwright_dir,
            chromium=chromium_path,
            outDir=str(out),
            total=len(ds),
            **config,
        )
        return browser_driver.drive(script, config, out, server_log, timeout)

    return run


@pytest.fixture
def color_dataset(dataset_name, tmp_path):
    """``browser_driver.make_color_dataset``, its images in the test's
    folder."""
    images = tmp_path / "images"
    images.mkdir()
    return browser_driver.make_color_dataset(dataset_name, str(images))
