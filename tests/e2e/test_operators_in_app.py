"""End to end in a real browser: compute_clusters from its App form, as a
new user runs it (issue 17). Inline errors for a field that does not exist
and a k larger than the dataset, progress while it runs, the result dialog
(clusters, sizes, fields written, time taken), the new fields in the
sidebar, the run's info, and a failure that only running can find. Driven by ``tests/e2e/operators.mjs``; the App server, Chromium
and Playwright come from the fixtures of ``tests/e2e/conftest.py``.
"""

import pytest

pytestmark = pytest.mark.slow


def test_compute_clusters_from_the_form(plugin, color_dataset, browser):
    ds = color_dataset
    ds.persistent = True

    report, detail = browser(
        "operators.mjs",
        ds,
        timeout=300,
        runKey="fromform",
        field="emb",
        k=3,
        tooLargeK=500,
        noiseMcs=20,
    )

    # errors in the form, inline, before anything runs
    assert "has no field 'missing'" in (
        report.get("field_error") or ""
    ), detail
    n = len(ds)
    k_error = report.get("k_error") or ""
    assert f"larger than the {n} samples" in k_error, detail
    assert report.get("execute_enabled_with_error") is False, detail

    assert "error" not in report, detail

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
