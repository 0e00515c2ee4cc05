"""The cluster explorer deciding what to keep: the Duplicates column (once a
duplicates run exists), the duplicate groups side by side in the grid (of
the selected cluster or all), the nearest-neighbour similarity histogram
with the run's threshold, counts and example pairs, and Find duplicates /
Select N opening their forms with the run preset.

Driven with the stand-in for the App in ``tests/panel_app.py``."""

import numpy as np
import pytest

from fiftyone import ViewField as F

from panel_app import App, URI, blobs, by_size, make_dataset

PLUGIN = "@curate/clustering"


@pytest.fixture
def kd(api, dataset_name):
    """Three blobs of 40, 25, 15 with a k-means run 'km', and near copies
    planted: 4 pairs and a triple in the first blob, 2 pairs in the
    second (cosine similarity above 0.99999)."""
    X = blobs()
    rng = np.random.default_rng(3)
    copies = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (8, 10)]
    copies += [(40, 41), (42, 43)]
    for a, b in copies:
        X[b] = X[a] + rng.normal(size=X.shape[1]).astype(np.float32) * 1e-3
    ds = make_dataset(dataset_name, X)
    api.compute_clusters(
        ds, "km", "emb", method="kmeans", kmeans__n_clusters=3
    )
    return ds


def _not_kept_per_cluster(ds):
    view = ds.match(F("dups_keep") == False)  # noqa: E712
    return view.count_values("km_cluster")


def test_duplicates_column_groups_and_tag(api, kd):
    app = App(kd)
    app.call("on_load")
    # no duplicates run: no column, no groups button, no summary
    assert "duplicates" not in app.rows()[0]
    assert not app.has("keep_tools", "show_all_duplicates")
    assert not app.has("dup_summary_text")

    # Find duplicates opens its form with the run and its field preset
    app.click("keep_tools", "find_duplicates")
    prompt = app.prompts[-1]
    assert prompt["operator_uri"] == f"{PLUGIN}/find_duplicates"
    assert prompt["params"] == {"run_key": "km", "embeddings_field": "emb"}
    assert prompt["on_success"] == f"{URI}#on_duplicates_done"
    out = api.find_duplicates(
        kd, "dups", "emb", threshold=0.9999, exact=False, run_key="km"
    )
    app.call("on_duplicates_done", result=out, original_params={})
    assert app.state["dup_key"] == "dups"
    assert out["n_groups"] == 7 and out["n_not_kept"] == 8

    # the Duplicates column: samples of each cluster not kept
    columns = app.prop("clusters_table")["view"]["columns"]
    assert [c["label"] for c in columns][-1].startswith("Duplicates")
    expected = _not_kept_per_cluster(kd)
    shown = {r["cluster_id"]: r["duplicates"] for r in app.rows()}
    assert shown == {c: expected.get(c, 0) for c in shown}
    big, mid, small = by_size(kd)
    assert (shown[big], shown[mid], shown[small]) == (6, 2, 0)
    text = app.prop("dup_summary_text")["default"]
    assert "7 groups (15 samples), **8 not kept**" in text
    assert "0.9999 (given)" in text

    # every group side by side: group by group, the kept sample first
    app.click("keep_tools", "show_all_duplicates")
    groups, keep = app.view.values(["dups_group", "dups_keep"])
    assert len(groups) == 15 and groups == sorted(groups)
    firsts = [i for i in range(15) if i == 0 or groups[i] != groups[i - 1]]
    assert all(keep[i] for i in firsts)
    assert sum(keep) == 7
    assert app.state["flagged"]["kind"] == "duplicates"
    app.type("flag_tag.tag", "dup")
    app.click("flag_tag", "tag_flagged")
    assert kd.count_sample_tags() == {"dup": 15}

    # the selected cluster's groups, and it stays selected
    app.click_cluster(mid)
    key = app.edit_key()
    button = app.prop(key, "dups", "show_duplicates")["view"]
    assert button["label"] == "Show its duplicate groups (4 samples)"
    app.click(key, "dups", "show_duplicates")
    assert app.view.count() == 4
    assert set(app.view.values("km_cluster")) == {mid}
    assert app.state["cluster"] == mid
    assert app.view.values("dups_group") == sorted(
        app.view.values("dups_group")
    )
    # the App may announce the view change with the state of before the
    # click: the groups are recognised from the view itself
    app.state["flagged"] = None
    app.call("on_change_view")
    assert app.state["cluster"] == mid
    assert app.state["flagged"]["kind"] == "duplicates"
    assert app.state["flagged"]["cluster"] == mid

    # a button shown for another duplicates run is refused
    app.call("on_show_duplicates", dup_key="gone")
    assert "out of date" in app.last_warning()


def test_histogram_with_the_runs_threshold(api, kd):
    app = App(kd)
    app.call("on_load")
    # before any duplicates run: the suggestion on the run's field
    app.click("keep_tools", "dup_histogram_toggle")
    (trace,) = app.display()["dup_histogram"]
    assert sum(trace["y"]) == len(kd)
    text = app.display()["dup_histogram_text"]
    assert text.startswith("No duplicates run yet")
    assert "Suggested threshold" in text and "/media?filepath=" in text
    assert app.prop("keep_tools", "dup_histogram_toggle")["view"]["label"] == (
        "Hide histogram"
    )
    app.click("keep_tools", "dup_histogram_toggle")
    assert not app.has("dup_histogram")

    # a run with a given threshold: blue bars at or above it
    api.find_duplicates(kd, "dups", "emb", threshold=0.99, exact=False)
    app.call("on_refresh")
    app.click("keep_tools", "dup_histogram_toggle")
    (trace,) = app.display()["dup_histogram"]
    pv = api.duplicate_threshold_preview(kd, "emb")
    blue = [lo >= 0.99 for lo in pv["histogram"]["lo"]]
    assert [c == "#2c7be5" for c in trace["marker"]["color"]] == blue
    assert trace["meta"] == {"dup_key": "dups", "field": "emb"}
    text = app.display()["dup_histogram_text"]
    assert "used threshold **0.99** (given)" in text
    for t, n in pv["counts"]:
        assert f"| {t:.4g}" in text and f"{n:,} of {len(kd)}" in text
    # the plot is laid out like the form's
    assert app.prop("dup_histogram")["view"]["layout"]["yaxis"]["type"] == (
        "log"
    )

    # a second run (suggested threshold): chosen, with its own preview;
    # the dropdown switches back
    out = api.find_duplicates(kd, "dups2", "emb", exact=False)
    app.call("on_duplicates_done", result=out, original_params={})
    assert app.state["dup_key"] == "dups2"
    assert app.state["dup_runs"] == ["dups", "dups2"]
    assert not app.display().get("dup_histogram")  # a new run hides it
    app.click("keep_tools", "dup_histogram_toggle")
    text = app.display()["dup_histogram_text"]
    assert f"used threshold **{out['threshold']:.4g}** (suggested)" in text
    assert app.has("dup_key")
    app.type("dup_key", "dups")
    app.call("on_change_dup_run", value="dups")
    assert app.state["dup_key"] == "dups"
    assert "0.99 (given)" in app.prop("dup_summary_text")["default"]

    # the run deleted underneath: the panel falls back to the other one
    api.delete_duplicates_run(kd, "dups")
    app.call("on_refresh")
    assert app.state["dup_key"] == "dups2" and app.state["dup_runs"] == [
        "dups2"
    ]
    assert not app.has("dup_key")  # one run: no dropdown


def test_select_n_opens_the_form_and_shows_the_subset(api, kd):
    api.find_duplicates(kd, "dups", "emb", threshold=0.9999, exact=False)
    app = App(kd)
    app.call("on_load")
    app.click("keep_tools", "select_subset")
    prompt = app.prompts[-1]
    assert prompt["operator_uri"] == f"{PLUGIN}/select_subset"
    assert prompt["params"] == {"run_key": "km", "dup_key": "dups"}
    assert prompt["on_success"] == f"{URI}#on_subset_done"
    out = api.select_subset(kd, "km", 12, dup_key="dups")
    app.call("on_subset_done", result=out, original_params=prompt["params"])
    assert app.view.count() == 12
    saved = kd.load_saved_view("km subset")
    assert sorted(app.view.values("id")) == sorted(saved.values("id"))
    assert app.view.match(F("dups_keep") == False).count() == 0  # noqa
    assert "saved view 'km subset' (12 samples)" in (
        app.notifications[-1]["message"]
    )
