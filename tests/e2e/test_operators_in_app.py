"""End to end in a real browser: compute_clusters from its App form, as a
new user runs it (issue 17). Inline errors for a field that does not exist
and a k larger than the dataset, progress while it runs, the result dialog
(clusters, sizes, fields written, time taken), the new fields in the
sidebar, the run's info, and a failure that only running can find. Driven by ``tests/e2e/operators.mjs``; the App server, Chromium
and Playwright come from the fixtures of ``tests/e2e/test_browser.py``.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "out")

pytestmark = pytest.mark.slow


def _browser_harness():
    """tests/e2e/test_browser.py, loaded once under a name of its own (its
    fixtures and dataset are shared, not copied)."""
    name = "curate_e2e_browser_harness"
    if name not in sys.modules:
        path = os.path.join(HERE, "test_browser.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_harness = _browser_harness()
chromium_path = _harness.chromium_path
playwright_dir = _harness.playwright_dir
app_server = _harness.app_server
make_color_dataset = _harness.make_color_dataset


def test_compute_clusters_from_the_form(
    plugin, dataset_name, tmp_path, chromium_path, playwright_dir, app_server
):
    images = tmp_path / "images"
    images.mkdir()
    ds = make_color_dataset(dataset_name, str(images))
    ds.persistent = True

    url, server_log = app_server
    out = tmp_path / "shots"
    out.mkdir()
    config = dict(
        url=f"{url}/datasets/{dataset_name}",
        playwrightDir=playwright_dir,
        chromium=chromium_path,
        outDir=str(out),
        total=len(ds),
        runKey="fromform",
        field="emb",
        k=3,
        tooLargeK=500,
        noiseMcs=20,
    )
    t0 = time.time()
    proc = subprocess.run(
        ["node", os.path.join(HERE, "operators.mjs"), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.time() - t0
    os.makedirs(OUT, exist_ok=True)
    for shot in sorted(os.listdir(out)):
        shutil.copy(out / shot, os.path.join(OUT, shot))
    lines = proc.stdout.strip().splitlines()
    detail = (
        f"browser driver exit {proc.returncode} after {elapsed:.0f} s\n"
        f"stderr:\n{proc.stderr[-4000:]}\nstdout:\n{proc.stdout[-3000:]}\n"
        f"server log:\n{server_log.read_text()[-3000:]}"
    )
    assert lines, detail
    report = json.loads(lines[-1])

    # errors in the form, inline, before anything runs
    assert "has no field 'missing'" in (
        report.get("field_error") or ""
    ), detail
    n = len(ds)
    k_error = report.get("k_error") or ""
    assert f"larger than the {n} samples" in k_error, detail
    assert report.get("execute_enabled_with_error") is False, detail

    assert proc.returncode == 0 and "error" not in report, detail

    # the result dialog says what happened
    ds.reload()
    sizes = sorted(ds.count_values("fromform_cluster").values(), reverse=True)
    text = report["result_text"]
    for words in (
        f"3 clusters of {n} samples",
        "sizes " + ", ".join(str(s) for s in sizes),
        "Fields written",
        "fromform_cluster",
        "Time taken",
    ):
        assert words in text, (words, text)
    # one dialog: the form closed, the result replaced the progress
    assert report["dialogs"] == 1, report
    # progress was shown while it ran: percent and stage
    stages = ("reading", "reducing", "clustering", "writing")
    assert any(p.split(": ")[-1] in stages for p in report["progress"]), report
    # and the sidebar shows the new field without opening any panel
    assert report["sidebar_has_field"], report.get("sidebar_text")

    # the run's info starts with its summary, per-cluster details last
    info = report["info_text"]
    summary = f"3 clusters of {n} samples"
    assert info.index(summary) < info.index("Config"), info
    assert info.index("Config") < info.index("representative ids last"), info

    assert sum(sizes) == n

    # the explorer's "Compute projection" with the grid on one cluster:
    # the whole run by default, and the form says so
    form = report["projection_form"]
    assert f"Projects all {n} samples of run 'fromform'" in form, form
    assert report["brain_key"] == "fromform_umap", report["brain_key"]
    result = report["projection_result"]
    assert f"{n} samples projected" in result, result
    assert "Colour by: fromform_cluster" in result, result

    # a failure found only by running reads as one line, no traceback
    failure = report["failure_text"].strip().splitlines()
    assert failure[0] == "Compute clusters failed", failure
    assert len([line for line in failure if line.strip()]) == 3, failure
    assert "Traceback" not in report["page_text"]
    assert not ds.has_field("allnoise_cluster")
