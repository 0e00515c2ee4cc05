"""End to end in a real browser: the App server on 127.0.0.1, headless
Chromium driven by Playwright (``tests/e2e/explorer.mjs``), and the cluster
explorer panel opened from the App's "+" menu.

The test installs what it needs: Debian's ``chromium`` (and Node.js) with
apt-get when missing and permitted, and the npm package ``playwright-core``
(version pinned in ``tests/e2e/package.json``) into a cache folder
(``$CURATE_E2E_CACHE``, default ``~/.cache/curate-clustering/e2e``). It is
skipped, with the reason, only where Chromium or Node.js cannot be
installed. Screenshots are copied to ``tests/out/`` for people to look at.
"""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import fiftyone as fo
from fiftyone import ViewField as F

logger = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = HERE
OUT = os.path.join(os.path.dirname(HERE), "out")

pytestmark = pytest.mark.slow


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


def make_color_dataset(name, folder, sizes=(16, 10, 6)):
    """Small PNG images of three colours, their mean colours (plus a little
    noise) as embeddings, and a k-means run 'colors' over them."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colors = [(220, 40, 40), (40, 180, 60), (40, 70, 220)]
    samples, X = [], []
    for g, (color, n) in enumerate(zip(colors, sizes)):
        for i in range(n):
            noise = rng.normal(0, 20, (48, 48, 3))
            pixels = np.clip(np.array(color) + noise, 0, 255)
            path = os.path.join(folder, f"{g}_{i}.png")
            Image.fromarray(pixels.astype(np.uint8)).save(path)
            samples.append(fo.Sample(filepath=path))
            x = np.concatenate([np.array(color) / 255, rng.normal(0, 0.02, 5)])
            X.append(x.astype(np.float32))
    ds = fo.Dataset(name)
    ds.add_samples(samples)
    ds.set_values("emb", X)
    return ds


def test_explorer_in_the_app(
    api, dataset_name, tmp_path, chromium_path, playwright_dir, app_server
):
    images = tmp_path / "images"
    images.mkdir()
    ds = make_color_dataset(dataset_name, str(images))
    api.compute_clusters(
        ds, "colors", "emb", method="kmeans", kmeans__n_clusters=3
    )
    sizes = ds.count_values("colors_cluster")
    assert sorted(sizes.values()) == [6, 10, 16]
    by_size = sorted(sizes, key=lambda c: -sizes[c])

    url, server_log = app_server
    out = tmp_path / "shots"
    out.mkdir()
    config = dict(
        url=f"{url}/datasets/{dataset_name}",
        playwrightDir=playwright_dir,
        chromium=chromium_path,
        outDir=str(out),
        total=len(ds),
        sizes=sizes,
        bar=1,
        row=2,
        label="blue squares",
    )
    t0 = time.time()
    proc = subprocess.run(
        ["node", os.path.join(E2E, "explorer.mjs"), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    elapsed = time.time() - t0

    os.makedirs(OUT, exist_ok=True)
    for shot in sorted(os.listdir(out)):
        shutil.copy(out / shot, os.path.join(OUT, shot))
    lines = proc.stdout.strip().splitlines()
    detail = (
        f"browser driver exit {proc.returncode} after {elapsed:.0f} s\n"
        f"stderr:\n{proc.stderr[-4000:]}\nstdout:\n{proc.stdout[-2000:]}\n"
        f"server log:\n{server_log.read_text()[-3000:]}"
    )
    assert lines, detail
    report = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in report, detail
    logger.info("Browser run took %.0f s: %s", elapsed, report)

    def count(text):
        return int(text.replace(",", "").split()[0])

    assert count(report["start"]) == len(ds)
    # the size chart: one bar per cluster, largest first
    assert report["bars"] == by_size, detail
    assert len(report["rows"]) == 3

    # the compute_clusters form opened from the panel, filled in
    assert report["prompt"] == {"embeddings_field": "emb"}

    bar, row, rename, show_all = report["steps"]
    # clicking a bar shows exactly that cluster in the grid
    assert bar["cluster"] == by_size[1]
    assert count(bar["count"]) == sizes[by_size[1]] == 10, detail
    # and so does clicking a row of the table
    assert row["cluster"] == by_size[2]
    assert count(row["count"]) == sizes[by_size[2]] == 6, detail

    # the label typed in the panel reached the database and the table
    small = by_size[2]
    ds.reload()  # the App server added the label field
    members = ds.match(F("colors_cluster") == small)
    assert set(members.values("colors_cluster_label")) == {"blue squares"}
    labelled = [r for r in report["rows_after_rename"] if "blue squares" in r]
    assert len(labelled) == 1 and labelled[0].split()[0] == small
    assert count(rename["count"]) == 6

    assert count(show_all["count"]) == len(ds)
    for shot in ("explorer_bar.png", "explorer_renamed.png"):
        assert (out / shot).stat().st_size > 10000
