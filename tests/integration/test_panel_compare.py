"""The cluster explorer keeping a run up with its dataset: the Stability
column (sorted by a header click, filtered to the dissolving clusters),
the Assigned column and the assigned and novel samples in the grid, and
the comparison with another run (ARI, AMI, verdicts, the flows as a
map and a table) whose clicks show the samples that moved.

Driven with the stand-in for the App in ``tests/panel_app.py``."""

import numpy as np
import pytest

from fiftyone import ViewField as F

from panel_app import App, blobs, make_dataset


def _labels(app, table="clusters_table"):
    columns = app.prop(table)["view"]["columns"]
    return [c["label"] for c in columns]


@pytest.fixture
def stab(api, dataset_name):
    """Three blobs clustered with k=4 (one blob is split: dissolving
    clusters) with stability, and k=3 without."""
    ds = make_dataset(dataset_name, blobs(sizes=(60, 50, 40)))
    api.compute_clusters(
        ds, "k3", "emb", method="kmeans", kmeans__n_clusters=3
    )
    api.compute_clusters(
        ds,
        "k4",
        "emb",
        method="kmeans",
        normalize=False,
        kmeans__n_clusters=4,
        stability_resamples=8,
    )
    return ds


def test_stability_column_sorts_and_filters(api, stab):
    app = App(stab)
    app.call("on_load")
    assert app.state["run_key"] == "k4"
    assert "Stability" in _labels(app)
    assert "Assigned" not in _labels(app)  # nothing assigned yet
    table = {r["id"]: r for r in api.get_cluster_table(stab, "k4")["clusters"]}
    rows = app.rows()
    for r in rows:
        value = table[r["cluster_id"]]["stability"]
        assert r["stability"].startswith(f"{value:.2f}")
        if value > 0.85:
            assert r["stability"].endswith(" stable")
        if value < 0.6:
            assert r["stability"].endswith(" dissolving")
    dissolving = sorted(c for c, r in table.items() if r["stability"] < 0.6)
    assert dissolving, table  # a split blob dissolves

    # a header click sorts by stability, least stable first, then back
    app.call(
        "on_table_click",
        row=-1,
        column=_labels(app).index("Stability"),
        path="clusters_table",
    )
    assert "Stability ▲" in _labels(app)
    values = [table[c]["stability"] for c in app.ids()]
    assert values == sorted(values)
    app.call(
        "on_table_click",
        row=-1,
        column=_labels(app).index("Stability ▲"),
        path="clusters_table",
    )
    values = [table[c]["stability"] for c in app.ids()]
    assert values == sorted(values, reverse=True)

    # only the dissolving clusters, in the table and the plot
    button = app.prop("compare_tools", "toggle_dissolving")["view"]
    assert f"dissolving clusters ({len(dissolving)}" in button["label"]
    app.click("compare_tools", "toggle_dissolving")
    assert sorted(app.ids()) == dissolving
    assert sorted(app.bars()["ids"]) == dissolving
    assert app.prop("compare_tools", "toggle_dissolving")["view"]["label"] == (
        "Show all clusters"
    )
    app.click("compare_tools", "toggle_dissolving")
    assert sorted(app.ids()) == sorted(table)

    # a run without stability: no column, no filter
    app.call("on_change_run", value="k3")
    assert "Stability" not in _labels(app)
    assert not app.has("compare_tools", "toggle_dissolving")


def test_assigned_column_and_samples_in_the_grid(api, dataset_name):
    rng = np.random.default_rng(1)
    X = blobs(sizes=(40, 30, 20))
    ds = make_dataset(dataset_name, X)
    ds.take(30, seed=1).tag_samples("new")
    fit = ds.match_tags("new", bool=False)
    api.compute_clusters(
        fit, "km", "emb", method="kmeans", kmeans__n_clusters=3
    )
    far = ds.match_tags("new").limit(3)
    far.set_values("emb", list(rng.uniform(50, 60, (3, 8)).astype("f4")))
    app = App(ds)
    app.call("on_load")
    assert "Assigned" not in _labels(app)
    assert not app.has("flag_tools", "show_all_assigned")

    out = api.assign_clusters(ds, "km")
    assert out["n_assigned"] == 30 and out["n_novel"] >= 3
    app.call("on_refresh")
    assert "Assigned" in _labels(app)
    rows = {r["cluster_id"]: r for r in app.rows()}
    assert sum(r["assigned"] for r in rows.values()) == 30
    assert rows["-1"]["assigned"] == out["n_novel"]

    # a cluster's assigned samples, then every novel one
    cid = max(
        (c for c in rows if c != "-1"), key=lambda c: rows[c]["assigned"]
    )
    app.click_cluster(cid)
    app.click(app.edit_key(), "flags", "show_assigned")
    shown = app.view
    assert len(shown) == rows[cid]["assigned"]
    assert set(shown.values("km_cluster")) == {cid}
    assert all("new" in t for t in shown.values("tags"))
    assert app.state["cluster"] == cid  # still selected
    app.click("flag_tools", "show_all_novel")
    assert len(app.view) == out["n_novel"]
    assert set(app.view.values("km_novel")) == {True}
    assert set(far.values("id")) <= set(app.view.values("id"))
    app.click("flag_tools", "show_all_assigned")
    assert len(app.view) == 30


def test_comparison_verdicts_flows_and_moved_samples(api, stab):
    app = App(stab)
    app.call("on_load")
    assert app.state["run_key"] == "k4"
    # the dropdown offers the other runs
    choices = app.prop("compare_tools", "other")["view"]["choices"]
    assert [c["value"] for c in choices] == ["k3"]
    app.type("compare_tools.other", "k3")
    app.call("on_compare", value="k3")

    out = api.compare_clustering_runs(stab, "k4", "k3")
    assert app.has("compare_text") and app.has("compare_flow_map")
    shown = app.display()
    summary = shown["comparison"]
    assert summary["ari"] == pytest.approx(out["ari"])
    assert summary["ami"] == pytest.approx(out["ami"])
    assert summary["verdicts"].get("merged") == 1  # the split blob
    # the verdict table: one row per cluster of either run
    verdicts = app.table_rows("compare_verdicts")
    assert len(verdicts) == 7
    assert {(r["run"], r["id"], r["verdict"]) for r in verdicts} == {
        ("k4" if c["run"] == "a" else "k3", c["id"], c["verdict"])
        for c in out["clusters"]
    }
    # the flow map: a row per cluster of k4, a column per cluster of k3,
    # the columns in the order of the rows' best matches, each flow in
    # one cell of one of two traces (stayed, moved) with its count
    stayed, moved = shown["compare_flow_map"]
    assert stayed["type"] == moved["type"] == "heatmap"
    assert stayed["meta"] == {"run_key": "k4", "other_run_key": "k3"}
    rows, cols = stayed["y"], stayed["x"]
    assert sorted(rows) == sorted(stab.distinct("k4_cluster"))
    assert sorted(cols) == sorted(stab.distinct("k3_cluster"))
    best = {
        c["id"]: c["best_match"] for c in out["clusters"] if c["run"] == "a"
    }
    assert cols[: len(set(best.values()))] == list(
        dict.fromkeys(best[r] for r in rows)
    )
    best_b = {
        c["id"]: c["best_match"] for c in out["clusters"] if c["run"] == "b"
    }
    cells = {}
    for trace in (stayed, moved):
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                if trace["z"][i][j] is not None:
                    assert (r, c) not in cells
                    cells[(r, c)] = (trace["name"], trace["text"][i][j])
    assert sum(n for _, n in cells.values()) == len(stab)
    for (r, c), (name, n) in cells.items():
        assert n == len(
            stab.match((F("k4_cluster") == r) & (F("k3_cluster") == c))
        )
        mutual = best[r] == c and best_b[c] == r
        assert name.startswith("stayed" if mutual else "moved")
    # the merged blob: k4's two halves both go to one k3 cluster, whose
    # best match is one of them: the other half moved
    assert sum(name.startswith("moved") for name, _ in cells.values()) == 1

    # a click on a cell of the map, as the App sends it: its samples
    (r, c), (name, n) = min(cells.items(), key=lambda kv: kv[1][1])
    app.call("on_flow_click", x=c, y=r, z=0.5, trace=name)
    assert len(app.view) == n
    assert set(app.view.values("k4_cluster")) == {r}
    assert set(app.view.values("k3_cluster")) == {c}
    assert "samples" in app.state["compare_shown"]

    # a verdict row: the cluster's samples outside its best match
    merged = next(
        i
        for i, r in enumerate(verdicts)
        if r["run"] == "k4" and r["verdict"] == "merged"
    )
    app.call("on_verdict_click", row=merged, column=0, path="compare_verdicts")
    r = verdicts[merged]
    expected = stab.match(
        (F("k4_cluster") == r["id"]) & (F("k3_cluster") != r["best_match"])
    )
    assert len(app.view) == len(expected) == r["moved"]
    # a flow row
    flows = app.table_rows("compare_flows")
    app.call("on_flow_row_click", row=0, column=0, path="compare_flows")
    assert len(app.view) == flows[0]["count"]

    # a click on a map of another comparison, or on a cell the map does
    # not hold, is refused
    app.call("on_flow_click", x=c, y=r, trace="moved: k4 → nope")
    assert "out of date" in app.last_warning()
    assert not app.display().get("comparison")
    app.call("on_compare", value="k3")
    app.call("on_flow_click", x="nope", y=r, trace=name)
    assert "out of date" in app.last_warning()
    assert not app.display().get("comparison")

    # switching runs drops the comparison; closing clears it
    app.call("on_compare", value="k3")
    assert app.display()["comparison"]["other_run_key"] == "k3"
    app.call("on_change_run", value="k3")
    assert not app.display().get("comparison")
    assert not app.has("compare_text")
    app.call("on_compare", value="k4")
    assert app.has("compare_flow_map")
    app.click("close_compare")
    assert not app.has("compare_flow_map")


def test_a_map_cell_is_a_share_of_its_whole_cluster(api, dataset_name):
    """Two unrelated runs of 30 clusters over 3,000 samples have about
    900 flows, more than the comparison keeps: each cell's share is still
    of its row's whole cluster, not of the flows kept."""
    rng = np.random.default_rng(0)
    ds = make_dataset(dataset_name, rng.normal(size=(3000, 8)))
    ds.set_values("emb2", list(rng.normal(size=(3000, 8))))
    for key, field in (("a", "emb"), ("b", "emb2")):
        api.compute_clusters(
            ds, key, field, method="kmeans", kmeans__n_clusters=30
        )
    out = api.compare_clustering_runs(ds, "a", "b")
    pairs = zip(ds.values("a_cluster"), ds.values("b_cluster"))
    assert len(out["flows"]) < len(set(pairs))  # some flows were left out
    app = App(ds)
    app.call("on_load")
    app.call("on_change_run", value="a")
    app.call("on_compare", value="b")
    size = ds.count_values("a_cluster")
    checked = 0
    for trace in app.display()["compare_flow_map"]:
        for i, row in enumerate(trace["y"]):
            for j, share in enumerate(trace["z"][i]):
                if share is not None:
                    n = trace["text"][i][j]
                    assert share == pytest.approx(n / size[row], abs=1e-4)
                    checked += 1
    assert checked > 100


def test_the_map_of_two_large_runs_shows_only_cells_it_can_hold(plugin):
    """40 clusters against 31: the map holds the 30 largest of the run
    and the clusters of the other run that receive most of *their*
    samples, so that no row or column it shows is empty."""
    import importlib

    view = importlib.import_module(
        plugin.__name__ + ".panels.explorer_compare_view"
    )
    # cluster i >= 10 of a (100 + 10 i samples) is cluster i of b; the
    # ten smallest (50 each) all went to one cluster 'x' of b, which is
    # larger than most, but none of its samples come from the rows shown
    flows = [
        dict(a=str(i), b=str(i), count=100 + 10 * i) for i in range(10, 40)
    ]
    flows += [dict(a=str(i), b="x", count=50) for i in range(10)]
    best = {("a", str(i)): str(i) for i in range(10, 40)}
    best.update({("b", str(i)): str(i) for i in range(10, 40)})
    best.update({("a", str(i)): "x" for i in range(10)})
    best[("b", "x")] = "0"
    stayed, moved = view.flow_map_data("a", "b", flows, best)
    rows, cols = stayed["y"], stayed["x"]
    assert rows == [str(i) for i in range(10, 40)]  # the 30 largest
    assert cols == rows  # not 'x'; the best matches in the rows' order
    for i in range(30):
        assert stayed["z"][i][i] is not None
        assert stayed["text"][i][i] == 100 + 10 * (i + 10)
    assert stayed["texttemplate"] == ""  # 900 cells: counts on hover only
