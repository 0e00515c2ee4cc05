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
fixtures of ``tests/e2e/conftest.py``; screenshots are copied to
``tests/out/``.
"""

import os

import pytest

import fiftyone as fo

from browser_driver import failed_checks, step

pytestmark = pytest.mark.slow


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


@pytest.fixture
def curated(api, color_dataset, browser):
    """The colour dataset with labels (three wrong) and a k-means run, the
    audit and the outliers driven through the panel in the App."""
    ds = color_dataset
    for sample in ds.iter_samples(autosave=True):
        label = _label(sample.filepath)
        if label is not None:
            sample["ground_truth"] = fo.Classification(label=label)
    api.compute_clusters(ds, RUN, "emb", method="kmeans", kmeans__n_clusters=6)
    report, detail = browser(
        "curation.mjs",
        ds,
        timeout=420,
        top=TOP,
        tag=TAG,
    )
    ds.reload()
    return ds, report, detail


def cells(shown, header):
    """``{cluster id: cell}`` of one column of a table the driver saw."""
    col = shown["headers"].index(header)
    return {row[0]: row[col] for row in shown["rows"]}


def test_label_audit_and_outliers_in_the_app(api, curated):
    """Every check runs; the failure lists each one that failed."""
    ds, report, detail = curated
    assert report.get("start") == len(ds), detail
    checks = (
        check_audit,
        check_outliers,
        check_cluster_suspects,
        check_tag,
        check_run_outliers,
    )
    failures = failed_checks(report, checks, api, ds, report)
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
