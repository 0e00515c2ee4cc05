"""End to end in a real browser: the label audit and the outlier scores
from the cluster explorer, as a user clicks through them (issue 13).

A colour dataset whose ``ground_truth`` names each sample's colour, three
samples deliberately mislabelled, and a k-means run computed before the
browser starts. Driven by ``tests/e2e/curation.mjs``: "Audit labels" opens
its form with the run and the label field preset; its result says how many
suspects it found and what it wrote; the table gains the Majority label,
Purity and Suspects columns; "Outliers" with a small top; a row with
suspects, then its "Show its N suspects" (the grid shows exactly the
mislabelled samples, the cluster stays selected); "Tag shown"; then the
run's outliers. The App server, Chromium and Playwright come from the
fixtures of ``tests/e2e/test_browser.py``; screenshots are copied to
``tests/out/``.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import fiftyone as fo

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

# make_color_dataset's five colour groups, in order; its four odd colours
# get no label
NAMES = ("red", "green", "blue", "yellow", "purple")
# Deliberately wrong labels, by image file name: two red images, one blue
WRONG = {"0_1.png": "green", "0_4.png": "blue", "2_3.png": "yellow"}
RUN = "hues"
TOP = 3
TAG = "relabel"


def _label(filepath):
    name = os.path.basename(filepath)
    group = int(name.split("_")[0])
    if name in WRONG:
        return WRONG[name]
    return NAMES[group] if group < len(NAMES) else None


def _name(filepath):
    return os.path.basename(filepath)


def run_driver(config, out, server_log):
    """Runs curation.mjs; returns its report and a text for failures."""
    t0 = time.time()
    try:
        proc = subprocess.run(
            ["node", os.path.join(HERE, "curation.mjs"), json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=420,
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
        f"stderr:\n{stderr[-6000:]}\n"
        f"server log:\n{server_log.read_text()[-3000:]}"
    )
    lines = stdout.strip().splitlines()
    if lines:
        report = json.loads(lines[-1])
    else:
        assert (out / "report.json").exists(), detail
        report = json.loads((out / "report.json").read_text())
        report["error"] = f"the browser driver was stopped ({returncode})"
    return report, detail


@pytest.fixture
def curated(
    api, dataset_name, tmp_path, chromium_path, playwright_dir, app_server
):
    """The colour dataset with labels (three wrong) and a k-means run, the
    audit and the outliers driven through the panel in the App."""
    images = tmp_path / "images"
    images.mkdir()
    ds = make_color_dataset(dataset_name, str(images))
    for sample in ds.iter_samples(autosave=True):
        label = _label(sample.filepath)
        if label is not None:
            sample["ground_truth"] = fo.Classification(label=label)
    api.compute_clusters(ds, RUN, "emb", method="kmeans", kmeans__n_clusters=6)
    url, server_log = app_server
    out = tmp_path / "shots"
    out.mkdir()
    config = dict(
        url=f"{url}/datasets/{dataset_name}",
        playwrightDir=playwright_dir,
        chromium=chromium_path,
        outDir=str(out),
        total=len(ds),
        top=TOP,
        tag=TAG,
    )
    report, detail = run_driver(config, out, server_log)
    ds.reload()
    return ds, report, detail


def step(report, name):
    """What the driver saw at step ``name``; fails when the step failed."""
    assert name not in report["errors"], report["errors"][name]
    assert name in report["steps"], f"the driver stopped before {name}"
    return report["steps"][name]


def cells(shown, header):
    """``{cluster id: cell}`` of one column of a table the driver saw."""
    col = shown["headers"].index(header)
    return {row[0]: row[col] for row in shown["rows"]}


def test_label_audit_and_outliers_in_the_app(api, curated):
    """Every check runs; the failure lists each one that failed."""
    ds, report, detail = curated
    assert report.get("start") == len(ds), detail
    failures = [report["error"]] if "error" in report else []
    for check in (
        check_audit,
        check_outliers,
        check_cluster_suspects,
        check_tag,
        check_run_outliers,
    ):
        try:
            check(api, ds, report)
        except AssertionError as e:
            failures.append(f"{check.__name__}: {e}")
    assert not failures, "\n\n".join(failures) + "\n\n" + detail


def check_audit(api, ds, report):
    """The form opens with the run and the label field preset; the result
    says what it found and wrote; the table gains three columns."""
    n = len(ds)
    # no curation columns before the audit
    assert step(report, "open")["headers"] == [
        "Cluster",
        "Label",
        "Size ▼",
        "In view",
        "Cohesion",
    ]
    form = step(report, "audit_form")
    assert (form["run"], form["label_field"]) == (RUN, "ground_truth"), form
    assert form["threshold"] == "0.8", form

    # the audit flags exactly the mislabelled samples
    suspects = api.flagged_view(ds, RUN, "suspects")
    assert sorted(map(_name, suspects.values("filepath"))) == sorted(WRONG)

    result = step(report, "audit_result")
    text = result["text"]
    assert text.startswith(
        f"Labels audited: 3 suspects of {n} samples in run {RUN}"
    ), text
    assert "4 samples have no label and no suspicion" in text, text
    assert (
        f"Fields written: {RUN}_label_suspicion, {RUN}_label_suggestion"
    ) in text, text
    assert f"Saved view: {RUN} label suspects" in text, text
    assert result["dialogs"] == 1, result  # the result replaced the form

    audited = step(report, "audited")
    assert audited["headers"][-3:] == ["Majority label", "Purity", "Suspects"]
    assert "Outliers" not in audited["headers"]
    table = api.get_cluster_table(ds, RUN)["clusters"]
    purity = {r["id"]: r["purity"] for r in table}
    majority = {r["id"]: r["majority_label"] for r in table}
    shown_purity = cells(audited, "Purity")
    for cid, p in purity.items():
        assert shown_purity[cid] == ("" if p is None else f"{p:.0%}"), (
            cid,
            shown_purity,
        )
    red = _cluster_of(ds, "0_1.png")
    assert shown_purity[red] == "86%"  # 12 of the 14 red images
    assert cells(audited, "Majority label")[red] == "red"
    assert cells(audited, "Majority label") == {
        c: m or "" for c, m in majority.items()
    }
    assert cells(audited, "Suspects") == _per_cluster(ds, WRONG)
    assert "Show 3 suspects" in audited["buttons"], audited["buttons"]


def check_outliers(api, ds, report):
    """The outliers' form with a small top, its result, the fourth
    column."""
    n = len(ds)
    form = step(report, "outliers_form")
    assert (form["run"], form["top"]) == (RUN, str(TOP)), form
    result = step(report, "outliers_result")
    text = result["text"]
    assert text.startswith(
        f"Outliers scored: {n} samples of run {RUN}, the top {TOP} in the "
        "saved view"
    ), text
    assert f"the top {TOP} score" in text, text
    assert f"Fields written: {RUN}_outlier" in text, text
    assert result["dialogs"] == 1, result

    scored = step(report, "scored")
    assert scored["headers"][-4:] == [
        "Majority label",
        "Purity",
        "Suspects",
        "Outliers",
    ]
    outliers = api.flagged_view(ds, RUN, "outliers")
    expected = _per_cluster(ds, outliers.values("filepath"))
    assert cells(scored, "Outliers") == expected
    assert sum(int(v) for v in expected.values()) == TOP
    assert f"Show {TOP} outliers" in scored["buttons"], scored["buttons"]


def check_cluster_suspects(api, ds, report):
    """The first row with suspects is the red cluster (largest first); its
    "Show its 2 suspects" shows the two mislabelled red images in the grid
    and keeps the cluster selected."""
    red = _cluster_of(ds, "0_1.png")
    size = ds.count_values(f"{RUN}_cluster")[red]
    select = step(report, "select")
    assert select["cluster"] == red, select
    assert select["count"] == size, select
    assert select["title"] == f"Cluster {red}: {size} samples", select
    assert "Show its 2 suspects" in select["buttons"], select["buttons"]

    shown = step(report, "cluster_suspects")
    assert shown["button"] == "Show its 2 suspects", shown
    assert shown["count"] == 2, shown
    # the grid's thumbnails: the wrong labels of the two red images
    assert sorted(shown["labels"]) == ["blue", "green"], shown
    # still selected, and the table counts what the grid shows
    assert shown["title"] == f"Cluster {red}: {size} samples", shown
    in_view = cells(shown["table"], "In view")
    assert in_view[red] == "2", in_view
    assert "Tag shown" in shown["buttons"], shown["buttons"]


def check_tag(api, ds, report):
    """ "Tag shown" tags exactly the suspects the grid shows; its input and
    button fit in the panel."""
    tag = step(report, "tag")
    assert tag["message"] == f"Tagged 2 suspects '{TAG}'", tag
    tagged = ds.match_tags(TAG).values("filepath")
    assert sorted(map(_name, tagged)) == ["0_1.png", "0_4.png"]
    assert ds.count_sample_tags() == {TAG: 2}
    assert tag["count"] == 2, tag
    panel, field, button = tag["panel"], tag["input"], tag["button"]
    assert field["width"] >= 150, f"the tag input is squeezed: {tag}"
    assert field["x"] + field["width"] <= button["x"], tag
    assert (
        button["x"] + button["width"] <= panel["x"] + panel["width"]
    ), f"'Tag shown' sits past the panel's edge: {tag}"


def check_run_outliers(api, ds, report):
    """The run's outliers: the top few in the grid, no cluster selected."""
    shown = step(report, "run_outliers")
    assert shown["button"] == f"Show {TOP} outliers", shown
    assert shown["count"] == TOP, shown
    outliers = api.flagged_view(ds, RUN, "outliers")
    labels = [
        label
        for label in outliers.values("ground_truth.label")
        if label is not None
    ]
    assert sorted(shown["labels"]) == sorted(labels), shown
    # the grid shows samples of several clusters: none stays selected
    assert shown["title"] is None, shown
    in_view = cells(shown["table"], "In view")
    assert in_view == cells(shown["table"], "Outliers"), shown["table"]


def _cluster_of(ds, name):
    """The cluster id of the image file ``name``."""
    for filepath, cid in zip(*ds.values(["filepath", f"{RUN}_cluster"])):
        if _name(filepath) == name:
            return cid
    raise AssertionError(f"no sample {name}")


def _per_cluster(ds, filepaths):
    """``{cluster id: str(count)}`` of the samples ``filepaths`` (names or
    paths) per cluster, every cluster of the run present."""
    names = {_name(f) for f in filepaths}
    out = {cid: 0 for cid in ds.distinct(f"{RUN}_cluster")}
    for filepath, cid in zip(*ds.values(["filepath", f"{RUN}_cluster"])):
        if _name(filepath) in names:
            out[cid] += 1
    return {cid: str(n) for cid, n in out.items()}
