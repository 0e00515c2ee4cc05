"""End to end in a real browser: keeping clusters up with the dataset in
the cluster explorer (issue 15). A k-means run with stability on 40 of 50
samples shows its Stability column and filters to its dissolving
clusters; assign_clusters, run from its form (opened by the panel), puts
the 10 others into the run and the Assigned column appears; the
comparison with another run shows ARI/AMI, the verdicts, the flows and a
map of them, and clicks on a cell of the map, a flow row and a verdict
row show the samples that moved in the grid. Driven by
``tests/e2e/compare.mjs``; the
App server, Chromium and Playwright come from the fixtures of
``tests/e2e/conftest.py``.
"""

import pytest

from fiftyone import ViewField as F

from browser_driver import step

pytestmark = pytest.mark.slow


def test_keeping_clusters_in_the_app(api, color_dataset, browser):
    ds = color_dataset
    ds.persistent = True
    ds.take(10, seed=3).tag_samples("new")
    api.compute_clusters(
        ds, "coarse", "emb", method="kmeans", kmeans__n_clusters=3
    )
    # six clusters of five colours: a colour split in two dissolves
    api.compute_clusters(
        ds.match_tags("new", bool=False),
        "hues",
        "emb",
        method="kmeans",
        kmeans__n_clusters=6,
        stability_resamples=8,
    )
    table = api.get_cluster_table(ds, "hues")["clusters"]
    stability = {r["id"]: r["stability"] for r in table}
    dissolving = sorted(c for c, v in stability.items() if v < 0.6)

    report, detail = browser(
        "compare.mjs",
        ds,
        timeout=420,
        otherRun="coarse",
    )
    ds.reload()
    failures = [report["error"]] if "error" in report else []
    checks = (
        (check_stability, (stability, dissolving)),
        (check_assign, (ds,)),
        (check_comparison, (api, ds)),
        (check_clicks, (ds,)),
        (check_map_does_not_zoom, ()),
    )
    for check, args in checks:
        try:
            check(report, *args)
        except AssertionError as e:
            failures.append(f"{check.__name__}: {e}")
    assert not failures, "\n\n".join(failures) + "\n\n" + detail


def check_stability(report, stability, dissolving):
    """The Stability column, with words, and the dissolving filter."""
    shown = step(report, "stability")
    assert "Stability" in shown["headers"], shown["headers"]
    assert "Assigned" not in shown["headers"]
    col = shown["headers"].index("Stability")
    cells = {r[0]: r[col] for r in shown["rows"]}
    assert set(cells) == set(stability), cells
    for cid, value in stability.items():
        assert cells[cid].startswith(f"{value:.2f}"), (cid, cells[cid])
        if value > 0.85:
            assert cells[cid].endswith("stable"), cells[cid]
        if value < 0.6:
            assert cells[cid].endswith("dissolving"), cells[cid]
    filtered = step(report, "dissolving")
    assert f"({len(dissolving)}, < 0.6)" in filtered["label"], filtered
    assert sorted(r[0] for r in filtered["rows"]) == dissolving, filtered
    assert filtered["rows_after"] == len(stability)


def check_assign(report, ds):
    """assign_clusters from its form: the result, then the column."""
    shown = step(report, "assign")
    assert "hues" in shown["form"], shown["form"]
    assert "Assigned 10 new samples to run 'hues'" in shown["result"]
    assert "hues_novel" in shown["result"]
    assert len(ds.match_tags("new").exists("hues_cluster")) == 10
    col = shown["headers"].index("Assigned")
    assigned = {r[0]: r[col] for r in shown["rows"]}
    values = ds.match_tags("new").count_values("hues_cluster")
    for cid, n in values.items():
        key = "-1 (noise)" if cid == "-1" else cid
        assert assigned[key] == str(n), (assigned, values)


def check_comparison(report, api, ds):
    """ARI/AMI, verdicts, flows and the map of the flows."""
    shown = step(report, "compare")
    out = api.compare_clustering_runs(ds, "hues", "coarse")
    assert f"ARI {out['ari']:.3f}" in shown["text"], shown["text"]
    assert f"AMI {out['ami']:.3f}" in shown["text"]
    assert f"on {len(ds)} shared samples" in shown["text"]
    verdicts = shown["verdicts"]
    assert verdicts["headers"][:4] == ["Run", "Cluster", "Size", "Verdict"]
    assert {(r[0], r[1], r[3]) for r in verdicts["rows"]} == {
        ("hues" if c["run"] == "a" else "coarse", c["id"], c["verdict"])
        for c in out["clusters"]
    }
    assert "merged" in {r[3] for r in verdicts["rows"]}
    flows = shown["flows"]["rows"]
    assert [(r[0], r[1], int(r[2])) for r in flows] == [
        (f["a"], f["b"], f["count"]) for f in out["flows"]
    ]
    # the map: a heatmap cell per flow, with its count, a row per
    # cluster of 'hues', a column per cluster of 'coarse'
    shown_map = shown["map"]
    assert shown_map["types"] == ["heatmap", "heatmap"], shown_map
    assert (shown_map["ytitle"], shown_map["xtitle"]) == ("hues", "coarse")
    assert sorted(shown_map["rows"]) == sorted(ds.distinct("hues_cluster"))
    assert sorted(shown_map["cols"]) == sorted(ds.distinct("coarse_cluster"))
    cells = {(c["row"], c["col"]): c["count"] for c in shown_map["cells"]}
    assert cells == {(f["a"], f["b"]): f["count"] for f in out["flows"]}
    assert any(c["trace"].startswith("moved") for c in shown_map["cells"])


def check_clicks(report, ds):
    """A cell of the map, a flow row and a verdict row show the samples
    that moved."""
    clicked = step(report, "map_click")
    cell = clicked["cell"]
    expected = ds.match(
        (F("hues_cluster") == cell["row"])
        & (F("coarse_cluster") == cell["col"])
    )
    assert clicked["grid"] == cell["count"] == len(expected), clicked
    assert "The grid shows" in clicked["note"], clicked
    what = (
        f"cluster {cell['row']} of 'hues' that are in cluster "
        f"{cell['col']} of 'coarse'"
    )
    assert what in clicked["note"], clicked
    flow = step(report, "flow_row")
    a, b, n = flow["row"][0], flow["row"][1], int(flow["row"][2])
    expected = ds.match((F("hues_cluster") == a) & (F("coarse_cluster") == b))
    assert flow["grid"] == n == len(expected), flow
    noun = "sample" if n == 1 else "samples"
    assert f"The grid shows {n} {noun}" in flow["note"], flow
    verdict = step(report, "verdict_row")
    moved = int(verdict["row"][6])
    assert moved > 0 and verdict["grid"] == moved, verdict
    run, cid, best = verdict["row"][0], verdict["row"][1], verdict["row"][4]
    other = "coarse" if run == "hues" else "hues"
    expected = ds.match(
        (F(f"{run}_cluster") == cid)
        & (F(f"{other}_cluster") != best)
        & F(f"{other}_cluster").exists()
    )
    assert len(expected) == moved, (verdict, len(expected))


def check_map_does_not_zoom(report):
    """A drag across the map (made to be clicked) leaves its axes as they
    were: no zoom box, no lost cells."""
    dragged = step(report, "map_drag")
    assert dragged["before"] == dragged["after"], dragged
