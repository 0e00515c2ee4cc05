"""What the browser tests share: running one of the Node drivers
(``tests/e2e/*.mjs``) and reading its report, a step of that report, and
the colour dataset most of them drive. Importable by name from the test
modules here (``tests/e2e/conftest.py`` loads it); the fixtures that start
the App server and find Chromium and Playwright are in that conftest.
"""

import json
import logging
import os
import shutil
import subprocess
import time

import numpy as np

import fiftyone as fo

logger = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "out")

COLORS = (
    (220, 40, 40),
    (40, 180, 60),
    (40, 70, 220),
    (230, 200, 40),
    (160, 60, 200),
)
# Odd colours that fit no group: HDBSCAN's noise
ODD_COLORS = ((255, 255, 255), (0, 0, 0), (128, 128, 128), (0, 200, 200))


def drive(script, config, out, server_log, timeout):
    """Runs the driver ``script`` (a file name in tests/e2e) with
    ``config``, copies its screenshots from ``out`` to ``tests/out``, and
    returns its report and a text for failures. The report is the last
    line of the driver's stdout or, when it was stopped, the report.json
    it wrote after its last step; it has an ``error`` when the driver
    failed."""
    t0 = time.time()
    try:
        proc = subprocess.run(
            ["node", os.path.join(HERE, script), json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        # The driver writes what it saw after every step
        returncode, stdout = "timeout", ""
        stderr = (e.stderr or b"").decode(errors="replace")
    elapsed = time.time() - t0
    os.makedirs(OUT, exist_ok=True)
    for shot in sorted(os.listdir(out)):
        if shot.endswith(".png"):
            shutil.copy(out / shot, os.path.join(OUT, shot))
    detail = (
        f"browser driver exit {returncode} after {elapsed:.0f} s\n"
        f"stderr:\n{stderr[-6000:]}\nstdout:\n{stdout[-3000:]}\n"
        f"server log:\n{server_log.read_text()[-3000:]}"
    )
    lines = stdout.strip().splitlines()
    if lines:
        report = json.loads(lines[-1])
    else:
        assert (out / "report.json").exists(), detail
        report = json.loads((out / "report.json").read_text())
        report["error"] = f"the browser driver was stopped ({returncode})"
    if returncode != 0 and "error" not in report:
        report["error"] = f"the browser driver exited {returncode}"
    logger.info("%s took %.0f s: %s", script, elapsed, report)
    return report, detail


def step(report, name):
    """What the driver saw at step ``name``; fails when the step failed."""
    assert name not in report["errors"], report["errors"][name]
    assert name in report["steps"], f"the driver stopped before {name}"
    return report["steps"][name]


def failed_checks(report, checks, *args):
    """The driver's error, if it has one, and the failure of each of
    ``checks`` called with ``args``: every check runs, so one test
    reports every regression."""
    failures = [report["error"]] if "error" in report else []
    for check in checks:
        try:
            check(*args)
        except AssertionError as e:
            failures.append(f"{check.__name__}: {e}")
    return failures


def make_color_dataset(name, folder, sizes=(14, 11, 9, 7, 5)):
    """Small PNG images of five colours and four odd ones, with their mean
    colours (plus a little noise) as embeddings in ``emb``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    groups = [(c, n) for c, n in zip(COLORS, sizes)]
    groups += [(c, 1) for c in ODD_COLORS]
    samples, X = [], []
    for g, (color, n) in enumerate(groups):
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
