"""The cluster explorer panel and the curation API behind it.

The panel is exercised the way the App drives it, by the stand-in for the
App in ``tests/panel_app.py``. Dataset effects are checked in the real
database.
"""

import copy
import importlib
import threading

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone import ViewField as F

from panel_app import (
    NOISE,
    URI,
    App,
    blobs,
    by_size,
    make_dataset,
    sizes_by_id,
    snapshot,
)


@pytest.fixture
def km(api, dataset_name):
    """A dataset with a k-means run 'km' of three blobs of 40, 25, 15."""
    ds = make_dataset(dataset_name, blobs())
    api.compute_clusters(
        ds, "km", "emb", method="kmeans", kmeans__n_clusters=3
    )
    return ds


@pytest.fixture
def hdb(api, dataset_name):
    """A dataset with an HDBSCAN run 'hd' that has noise."""
    ds = make_dataset(dataset_name + "-hd", blobs(outliers=12))
    api.compute_clusters(
        ds,
        "hd",
        "emb",
        method="hdbscan",
        reduce="none",
        normalize=False,
        hdbscan__min_cluster_size=8,
    )
    yield ds
    ds.delete()


# ----------------------------------------------------------------------
# The curation API
# ----------------------------------------------------------------------


def test_cluster_table_rows_and_in_view_counts(api, km):
    sizes = sizes_by_id(km, "km_cluster")
    table = api.get_cluster_table(km, "km")
    assert table["method"] == "kmeans"
    assert table["embeddings_field"] == "emb"
    assert table["score_kind"] == "distance"
    assert table["n_clusters"] == 3
    assert table["label_field"] is None
    assert [r["size"] for r in table["clusters"]] == [40, 25, 15]
    assert {r["id"]: r["size"] for r in table["clusters"]} == sizes
    assert all(r["in_view"] is None for r in table["clusters"])
    assert all(r["score_mean"] > 0 for r in table["clusters"])

    cid = table["clusters"][1]["id"]
    view = km.match(F("km_cluster") == cid).limit(5)
    table = api.get_cluster_table(km, "km", view=view)
    counts = {r["id"]: r["in_view"] for r in table["clusters"]}
    assert counts == {c: (5 if c == cid else 0) for c in sizes}


def test_cluster_view_is_the_cluster_most_typical_first(api, km, hdb):
    for cid, n in sizes_by_id(km, "km_cluster").items():
        view = api.cluster_view(km, "km", cid)
        assert view.count() == n
        assert set(view.values("km_cluster")) == {cid}
        d = view.values("km_distance")
        assert d == sorted(d)
    # integer ids are accepted
    assert (
        api.cluster_view(km, "km", 0).count()
        == sizes_by_id(km, "km_cluster")["0"]
    )

    sizes = sizes_by_id(hdb, "hd_cluster")
    assert NOISE in sizes
    for cid, n in sizes.items():
        view = api.cluster_view(hdb, "hd", cid)
        assert view.count() == n
        s = view.values("hd_strength")
        assert s == sorted(s, reverse=True)
    # a view restricts the result to its samples
    few = hdb.limit(30)
    assert api.cluster_view(few, "hd", "0").count() == few.count_values(
        "hd_cluster"
    ).get("0", 0)


def test_cluster_view_bad_input(api, km):
    with pytest.raises(api.InputError, match="has no cluster '7'.*0, 1, 2"):
        api.cluster_view(km, "km", "7")
    with pytest.raises(api.InputError, match="no clustering run 'nope'"):
        api.cluster_view(km, "nope", "0")
    with pytest.raises(api.InputError, match="cluster id is a string"):
        api.cluster_view(km, "km", 1.5)


def test_rename_cluster_creates_owned_label_field(api, km):
    big, mid, small = by_size(km)
    out = api.rename_cluster(km, "km", mid, "  round things ")
    assert out["label"] == "round things"
    assert out["cluster_id"] == mid
    assert out["previous_label"] is None
    assert out["label_field"] == "km_cluster_label"
    assert out["n_samples"] == 25

    km.reload()
    assert isinstance(
        km.get_field_schema()["km_cluster_label"], fo.StringField
    )
    members = km.match(F("km_cluster") == mid)
    assert set(members.values("km_cluster_label")) == {"round things"}
    others = km.match(F("km_cluster") != mid)
    assert set(others.values("km_cluster_label")) == {None}
    # cluster ids are untouched
    assert sizes_by_id(km, "km_cluster") == {big: 40, mid: 25, small: 15}

    info = api.get_clustering_run_info(km, "km")
    assert info["config"]["label_field"] == "km_cluster_label"
    assert "km_cluster_label" in info["config"]["fields"]
    c = info["statistics"]["clusters"][mid]
    assert c["label"] == "round things"
    assert c["label_source"] == "manual"

    out = api.rename_cluster(km, "km", int(mid), "spheres")
    assert out["previous_label"] == "round things"
    assert set(members.values("km_cluster_label")) == {"spheres"}
    edits = api.get_cluster_table(km, "km")["edits"]
    assert [e["op"] for e in edits] == ["rename", "rename"]
    assert edits[-1]["previous"] == "round things"

    # the label field belongs to the run: deleting the run removes it
    api.delete_clustering_run(km, "km")
    km.reload()
    assert "km_cluster_label" not in km.get_field_schema()


@pytest.mark.parametrize(
    "cluster_id, label, message",
    [
        ("9", "x", "has no cluster '9'"),
        ("1", "", "label must be a non-empty string"),
        ("1", "   ", "label must be a non-empty string"),
        ("1", None, "label must be a non-empty string"),
        ("1", "x" * 201, "at most 200 characters"),
    ],
)
def test_rename_cluster_bad_input_writes_nothing(
    api, km, cluster_id, label, message
):
    before = snapshot(km)
    with pytest.raises(api.InputError, match=message):
        api.rename_cluster(km, "km", cluster_id, label)
    assert snapshot(km) == before


def test_rename_noise_and_foreign_label_field_are_refused(api, km, hdb):
    before = snapshot(hdb)
    with pytest.raises(api.InputError, match="noise"):
        api.rename_cluster(hdb, "hd", "-1", "junk")
    assert snapshot(hdb) == before

    km.add_sample_field("km_cluster_label", fo.StringField)
    km.set_values("km_cluster_label", ["mine"] * len(km))
    before = snapshot(km)
    with pytest.raises(api.InputError, match="already exists"):
        api.rename_cluster(km, "km", "0", "cats")
    assert snapshot(km) == before


def test_tag_cluster(api, km, hdb):
    small = by_size(km)[-1]
    out = api.tag_cluster(km, "km", small, " review ")
    assert out == dict(
        run_key="km", cluster_id=small, tag="review", n_samples=15
    )
    assert km.count_sample_tags() == {"review": 15}
    tagged = km.match_tags("review")
    assert set(tagged.values("km_cluster")) == {small}

    n_noise = sizes_by_id(hdb, "hd_cluster")[NOISE]
    assert api.tag_cluster(hdb, "hd", "-1", "noise")["n_samples"] == n_noise

    before = snapshot(km)
    for cid, tag, message in [
        ("2", "", "tag must be a non-empty string"),
        ("2", 3, "tag must be a non-empty string"),
        ("5", "x", "has no cluster '5'"),
    ]:
        with pytest.raises(api.InputError, match=message):
            api.tag_cluster(km, "km", cid, tag)
    assert snapshot(km) == before


def test_merge_clusters_updates_field_sizes_and_results(api, km):
    big, mid, small = by_size(km)
    before = api.load_clustering_results(km, "km")
    api.rename_cluster(km, "km", small, "small ones")
    ids_mid = set(km.match(F("km_cluster") == mid).values("id"))
    ids_small = set(km.match(F("km_cluster") == small).values("id"))

    out = api.merge_clusters(km, "km", [mid, small], into=small)
    assert out == dict(
        run_key="km", into=small, merged=[mid], size=40, n_clusters=2
    )
    assert sizes_by_id(km, "km_cluster") == {big: 40, small: 40}
    merged = km.match(F("km_cluster") == small)
    assert set(merged.values("id")) == ids_mid | ids_small
    # members of the merged cluster carry its label
    assert set(merged.values("km_cluster_label")) == {"small ones"}

    results = api.load_clustering_results(km, "km")
    clusters = results["clusters"]
    assert set(clusters) == {big, small}
    c = clusters[small]
    assert c["size"] == 40
    assert c["label"] == "small ones"
    assert c["merged_from"] == [mid]
    expected = (
        25 * np.array(before["clusters"][mid]["centroid"])
        + 15 * np.array(before["clusters"][small]["centroid"])
    ) / 40
    np.testing.assert_allclose(c["centroid"], expected, rtol=1e-5)
    expected_mean = (
        25 * before["clusters"][mid]["score_mean"]
        + 15 * before["clusters"][small]["score_mean"]
    ) / 40
    assert c["score_mean"] == pytest.approx(expected_mean)
    # representatives: the most typical members of the merged cluster
    reps = c["representatives"]
    assert len(reps) == 20 and set(reps) <= ids_mid | ids_small
    top = api.cluster_view(km, "km", small).limit(20).values("id")
    assert reps == top
    assert results["centroids"].shape == (2, 8)
    assert results["edits"][-1]["op"] == "merge"
    assert api.get_cluster_table(km, "km")["n_clusters"] == 2
    assert clusters[big] == before["clusters"][big]


def test_merge_clusters_default_target_is_the_largest(api, km):
    big, mid, small = by_size(km)
    out = api.merge_clusters(km, "km", [int(small), big, mid])
    assert out["into"] == big
    assert sorted(out["merged"]) == sorted([mid, small])
    assert sizes_by_id(km, "km_cluster") == {big: 80}
    # no label field is created by a merge
    assert "km_cluster_label" not in km.get_field_schema()


@pytest.mark.parametrize(
    "ids, into, message",
    [
        (["1"], None, "Nothing to merge"),
        (["1", "1"], "1", "Nothing to merge"),
        ([], None, "empty"),
        (["1", "8"], None, "has no cluster '8'"),
        (["1"], "8", "has no cluster '8'"),
        ("1", None, "must be a list"),
        (3, None, "must be a list"),
    ],
)
def test_merge_clusters_bad_input_writes_nothing(api, km, ids, into, message):
    before = snapshot(km)
    with pytest.raises(api.InputError, match=message):
        api.merge_clusters(km, "km", ids, into=into)
    assert snapshot(km) == before


def test_merge_noise_is_refused(api, hdb):
    before = snapshot(hdb)
    with pytest.raises(api.InputError, match="noise"):
        api.merge_clusters(hdb, "hd", ["0", "-1"], into="0")
    with pytest.raises(api.InputError, match="noise"):
        api.merge_clusters(hdb, "hd", ["0"], into="-1")
    assert snapshot(hdb) == before


def test_merge_with_strength_scores(api, hdb):
    sizes = sizes_by_id(hdb, "hd_cluster")
    real = sorted((c for c in sizes if c != NOISE), key=int)
    assert len(real) >= 2
    a, b = real[:2]
    out = api.merge_clusters(hdb, "hd", [a, b], into=a)
    assert out["size"] == sizes[a] + sizes[b]
    reps = api.load_clustering_results(hdb, "hd")["clusters"][a][
        "representatives"
    ]
    top = api.cluster_view(hdb, "hd", a).limit(len(reps)).values("id")
    strengths = dict(zip(*hdb.values(["id", "hd_strength"])))
    assert [strengths[i] for i in reps] == [strengths[i] for i in top]


# ----------------------------------------------------------------------
# The panel, driven through FiftyOne's panel execution
# ----------------------------------------------------------------------


def test_panel_is_registered_with_its_events(plugin):
    panel = foo.get_operator(URI)
    assert isinstance(panel, foo.Panel)
    config = panel.resolve_panel_config()
    assert config["name"] == "cluster_explorer"
    assert config["label"] == "Cluster explorer"
    for method in ("on_load", "on_change_view", "on_change_dataset"):
        assert config[method] == f"{URI}#{method}"


def test_panel_without_runs_offers_compute_clusters(dataset_name, plugin):
    ds = make_dataset(dataset_name, blobs())
    app = App(ds)
    app.call("on_load")
    assert app.state["runs"] == []
    assert app.state["run_key"] is None
    assert app.rows() == []
    assert app.has("no_runs")
    assert not app.has("run_key")
    btn = app.prop("tools", "compute_clusters")["view"]
    assert btn["operator"] == f"{URI}#on_compute_clusters"

    app.call("on_compute_clusters")
    (prompt,) = app.prompts
    assert prompt["operator_uri"] == "@curate/clustering/compute_clusters"
    assert prompt["on_success"] == f"{URI}#on_operator_done"


def test_panel_loads_run_summary_table_and_plot(api, km):
    api.compute_clusters(
        km, "km5", "emb", method="kmeans", kmeans__n_clusters=5
    )
    app = App(km)
    app.call("on_load")
    state = app.state
    assert state["runs"] == ["km", "km5"]
    assert state["run_key"] == "km5"  # the newest run
    app.call("on_change_run", value="km")
    state = app.state
    assert state["run_key"] == "km"
    summary = state["summary"]
    assert summary["method"] == "kmeans"
    assert summary["params"]["n_clusters"] == 3
    assert summary["embeddings_field"] == "emb"
    assert summary["n_clusters"] == 3
    assert set(summary["metrics"]) >= {"silhouette"}

    rows = app.rows()
    assert [r["size"] for r in rows] == [40, 25, 15]
    sizes = sizes_by_id(km, "km_cluster")
    assert {r["cluster_id"]: r["size"] for r in rows} == sizes
    assert all(float(r["score_mean"]) > 0 for r in rows)
    assert all(r["in_view"] == r["size"] for r in rows)

    # one bar per row, carrying its cluster and run
    trace = app.bars()
    assert trace["type"] == "bar"
    assert trace["ids"] == trace["customdata"] == app.ids()
    assert trace["meta"] == {"run_key": "km"}
    assert trace["y"] == [40, 25, 15]

    # The rendered schema: a plotly plot and a table wired to the panel
    plot = app.prop("sizes_plot")["view"]
    assert plot["name"] == "PlotlyView"
    assert plot["on_click"] == f"{URI}#on_plot_click"
    # the axes fit this run's bars
    assert plot["layout"]["yaxis"]["range"] == [0, pytest.approx(40 * 1.08)]
    assert plot["layout"]["xaxis"]["categoryarray"] == trace["x"]
    table = app.prop("clusters_table")["view"]
    assert table["name"] == "TableView"
    assert [c["key"] for c in table["columns"]] == [
        "id",
        "label",
        "size",
        "in_view",
        "score_mean",
    ]
    assert table["on_click_cell"] == f"{URI}#on_table_click"
    assert not app.has("clusters_after")  # no selection: one table
    assert "kmeans" in app.prop("summary_text")["default"]

    # What the panel shows is kept whole in its state, stamped with the
    # run; nothing in its data, which the App would merge into it
    assert app.data == {}
    for key in ("clusters_table", "clusters_after"):
        assert state[key]["run_key"] == "km"
    # only inputs and what the panel shows share a name with the state
    shown = set(app.schema["type"]["properties"])
    assert shown & set(state) <= {"run_key", "clusters_table", "sizes_plot"}


def test_panel_sorts_by_clicked_header(km, plugin):
    app = App(km)
    app.call("on_load")
    assert [r["size"] for r in app.rows()] == [40, 25, 15]
    app.call("on_table_click", row=-1, column=2)  # size: toggles
    assert [r["size"] for r in app.rows()] == [15, 25, 40]
    app.call("on_table_click", row=-1, column=0)  # id ascending
    assert app.ids() == ["0", "1", "2"]
    assert app.state["sort_by"] == "id"
    labels = [
        c["label"] for c in app.prop("clusters_table")["view"]["columns"]
    ]
    assert labels[0] == "Cluster ▲"
    app.call("on_table_click", row=-1, column=4)  # cohesion: tightest first
    scores = [float(r["score_mean"]) for r in app.rows()]
    assert scores == sorted(scores)
    assert app.bars()["ids"] == app.ids()


def test_panel_selects_cluster_and_shows_it_in_the_grid(km, plugin):
    app = App(km)
    app.call("on_load")
    order = app.ids()

    # click the second bar
    app.click_bar(1)
    cid = order[1]
    assert app.state["cluster"] == cid
    assert app.view.count() == 25
    assert set(app.view.values("km_cluster")) == {cid}
    d = app.view.values("km_distance")
    assert d == sorted(d)  # most typical first
    assert app.view_changes == 1
    # the App's view change kept the selection
    assert app.state["cluster"] == cid
    assert app.selected() == ([cid], [cid])
    in_view = {r["cluster_id"]: r["in_view"] for r in app.rows()}
    assert in_view == {c: (25 if c == cid else 0) for c in order}
    assert app.state["cluster_info"]["size"] == 25

    # The table splits at the selected row; its actions sit right below
    # it, and its buttons carry its id
    assert [r["cluster_id"] for r in app.table_rows()] == order[:2]
    after = app.table_rows("clusters_after")
    assert [r["cluster_id"] for r in after] == order[2:]
    key = app.edit_key()
    names = list(app.schema["type"]["properties"])
    assert names.index("clusters_table") + 1 == names.index("selected_title")
    assert names.index("selected_title") + 1 == names.index(key)
    assert names.index(key) + 1 == names.index("clusters_after")
    assert app.has(key, "rename", "label") and app.has(key, "merge", "into")
    for name in ("rename", "tag", "merge"):
        button = app.prop(key, name, name)["view"]
        assert button["params"] == {"cluster": cid}

    # click the row after it
    app.click_cluster(order[2])
    assert app.state["cluster"] == order[2]
    assert app.view.count() == 15
    assert app.ids() == order

    # back to every sample
    app.click(app.edit_key(), "show_all")
    assert app.state["cluster"] is None
    assert app.view.count() == len(km)
    assert not app.has("clusters_after") and len(app.rows()) == 3

    # the user changes the view elsewhere: the selection goes
    app.click_bar(0)
    assert app.view.count() == 40
    app.view = km.limit(3)
    app.call("on_change_view")
    assert app.state["cluster"] is None
    assert [r["in_view"] for r in app.rows()] == [
        km.limit(3).count_values("km_cluster").get(c, 0) for c in order
    ]


def test_panel_keeps_selection_under_sidebar_filters(km, plugin):
    app = App(km)
    app.call("on_load")
    cid = app.ids()[0]
    app.click_row(0)
    app.view = app.view.match(F("km_distance") < 100)
    app.call("on_change_view")
    assert app.state["cluster"] == cid


def test_panel_renames_tags_and_merges(api, km):
    app = App(km)
    app.call("on_load")
    big, mid, small = app.ids()

    app.click_bar(1)
    key = app.edit_key()
    assert app.display()[key] == {"rename": {"label": ""}}
    app.edit(mid, "rename.label", "medium blobs")
    app.click(key, "rename", "rename")
    assert app.notifications[-1]["variant"] == "success"
    members = km.match(F("km_cluster") == mid)
    assert set(members.values("km_cluster_label")) == {"medium blobs"}
    labels = {r["cluster_id"]: r["label"] for r in app.rows()}
    assert labels[mid] == "medium blobs"
    assert app.state["cluster_info"]["label"] == "medium blobs"
    assert "km_cluster_label" in app.prop("summary_text")["default"]

    app.edit(mid, "tag.text", "check")
    app.click(key, "tag", "tag")
    assert km.count_sample_tags() == {"check": 25}
    assert app.reloads >= 2

    # merging the selected cluster into the small one asks first
    app.edit(mid, "merge.into", small)
    before = snapshot(km)
    app.click(key, "merge", "merge")
    assert app.last_error() is None
    assert snapshot(km) == before
    question = app.prop(key, "merge_question")["default"]
    assert f"cluster {mid} · `medium blobs`** (25 samples)" in question
    assert f"**cluster {small}** (15 samples)" in question
    confirm = app.prop(key, "confirm", "confirm_merge")["view"]
    assert confirm["params"] == {"cluster": mid, "into": small}
    app.click(key, "confirm", "cancel_merge")
    assert not app.has(key, "merge_question")
    assert snapshot(km) == before

    app.click(key, "merge", "merge")
    app.click(key, "confirm", "confirm_merge")
    assert app.last_error() is None
    assert sizes_by_id(km, "km_cluster") == {big: 40, small: 40}
    assert app.state["cluster"] == small
    assert app.view.count() == 40
    assert set(app.view.values("km_cluster")) == {small}
    assert {r["cluster_id"]: r["size"] for r in app.rows()} == {
        big: 40,
        small: 40,
    }
    assert app.bars()["ids"] == app.ids()
    assert app.selected() == ([small], [small])
    assert app.state["summary"]["n_clusters"] == 2
    assert app.state["summary"]["n_edits"] == 2
    # the inputs of the merged cluster went with it
    assert app.state[key] is None and not app.has(key)
    results = api.load_clustering_results(km, "km")
    assert results["clusters"][small]["size"] == 40
    assert mid not in results["clusters"]


def test_panel_merge_choices_show_labels_and_sizes(api, km):
    big, mid, small = by_size(km)
    api.rename_cluster(km, "km", small, "small ones")
    app = App(km)
    app.call("on_load")
    app.click_cluster(big)
    choices = app.prop(app.edit_key(), "merge", "into")["view"]["choices"]
    assert [(c["value"], c["label"]) for c in choices] == [
        (mid, f"cluster {mid} (25 samples)"),
        (small, f"cluster {small} · small ones (15 samples)"),
    ]


def test_panel_inputs_start_empty_for_each_selection(api, km):
    a, b, c = by_size(km)
    api.rename_cluster(km, "km", b, "bees")
    app = App(km)
    app.call("on_load")
    app.click_cluster(a)
    key_a = app.edit_key()
    app.edit(a, "rename.label", "typed")
    app.edit(a, "tag.text", "typed")
    app.edit(a, "merge.into", c)
    app.click(key_a, "merge", "merge")
    assert app.has(key_a, "merge_question")

    app.click_cluster(b)
    key_b = app.edit_key()
    assert key_b != key_a
    assert app.state[key_a] is None and not app.has(key_a)
    assert app.state["confirm_merge"] is None
    # the new selection's inputs: its label, nothing else
    assert app.display()[key_b] == {"rename": {"label": "bees"}}
    assert not app.has(key_b, "merge_question")

    # and so when the first one is selected again
    app.click_cluster(a)
    assert app.display()[key_a] == {"rename": {"label": ""}}
    assert app.state[key_b] is None


def test_panel_reports_bad_edits_without_writing(km, plugin):
    app = App(km)
    app.call("on_load")
    app.click_row(0)
    cid = app.state["cluster"]
    key = app.edit_key()
    before = snapshot(km)
    app.edit(cid, "rename.label", "   ")
    app.click(key, "rename", "rename")
    assert "label must be a non-empty string" in app.last_error()
    app.edit(cid, "tag.text", "")
    app.click(key, "tag", "tag")
    assert "tag must be a non-empty string" in app.last_error()
    app.click(key, "merge", "merge")
    assert "Choose the cluster to merge into" in app.last_error()
    assert snapshot(km) == before


def test_panel_shows_noise_as_such(hdb, plugin):
    app = App(hdb)
    app.call("on_load")
    rows = app.rows()
    assert rows[-1]["id"] == "-1 (noise)"
    assert app.ids()[-1] == NOISE
    trace = app.bars()
    assert trace["x"][-1] == "noise"
    assert trace["ids"][-1] == NOISE
    assert trace["marker"]["color"][-1] == "#9e9e9e"
    assert "strength" in app.prop("summary_text")["default"]

    n_noise = sizes_by_id(hdb, "hd_cluster")[NOISE]
    app.click_bar(len(rows) - 1)
    assert app.view.count() == n_noise
    assert app.state["cluster"] == NOISE
    assert "Noise" in app.prop("selected_title")["default"]
    key = app.edit_key()
    assert key == "edit_noise"
    assert not app.has(key, "rename") and not app.has(key, "merge")
    assert app.has(key, "tag", "text")
    # sorting keeps the noise bucket last
    app.call("on_table_click", row=-1, column=2)
    assert app.ids()[-1] == NOISE


def test_panel_replaces_what_it_shows_after_a_merge(api, hdb):
    """The App merges a panel's data into what it copied of it into the
    state, list index by list index: after a merge, a run change or a new
    run, nothing of what was shown before may stay."""
    app = App(hdb)
    app.call("on_load")
    ids = app.ids()
    source, into = ids[-2], ids[0]
    app.click_cluster(source)
    key = app.edit_key()
    app.edit(source, "merge.into", into)  # the App copies what it shows
    app.click(key, "merge", "merge")
    app.click(key, "confirm", "confirm_merge")

    def check():
        assert len(app.rows()) == len(ids) - 1
        assert sorted(app.ids()) == sorted(c for c in ids if c != source)
        trace = app.bars()
        assert trace["ids"] == app.ids()
        assert len(trace["x"]) == len(trace["y"]) == len(ids) - 1
        assert app.selected() == ([into], [into])

    check()
    app.call("on_refresh")
    check()
    app.reload_page()
    check()


def test_panel_run_switch_leaves_nothing_of_the_other_run(api, hdb):
    api.compute_clusters(
        hdb, "km", "emb", method="kmeans", kmeans__n_clusters=2
    )
    km_sizes = sizes_by_id(hdb, "km_cluster")
    app = App(hdb)
    app.call("on_load")
    app.call("on_change_run", value="hd")
    hd_ids = app.ids()
    assert NOISE in hd_ids and len(hd_ids) > 2
    app.click_cluster(hd_ids[1])
    app.edit(hd_ids[1], "tag.text", "draft")  # the App copies what it shows

    # The App may announce a view change before the run change
    app.type("run_key", "km")
    app.call("on_change_view")
    app.call("on_change_run", value="km")
    assert app.state["run_key"] == "km"
    assert sorted(app.ids()) == sorted(km_sizes)
    assert {r["cluster_id"]: r["size"] for r in app.rows()} == km_sizes
    trace = app.bars()
    assert trace["ids"] == app.ids() and "noise" not in trace["x"]
    assert trace["meta"] == {"run_key": "km"}
    top = max(km_sizes.values())
    yaxis = app.prop("sizes_plot")["view"]["layout"]["yaxis"]
    assert yaxis["range"] == [0, pytest.approx(top * 1.08)]
    # nothing of the other run is selected, nor in the grid
    assert app.state["cluster"] is None
    assert app.view.count() == len(hdb)
    assert not [k for k, v in app.state.items() if k.startswith("edit_") and v]

    app.type("run_key", "hd")
    app.call("on_change_run", value="hd")
    assert app.ids() == hd_ids
    assert app.bars()["ids"] == hd_ids


def test_panel_new_run_replaces_the_table(api, hdb):
    app = App(hdb)
    app.call("on_load")
    ids = app.ids()
    app.click_cluster(ids[0])
    app.edit(ids[0], "tag.text", "draft")  # the App copies what it shows
    app.call("on_compute_clusters")
    out = api.compute_clusters(
        hdb, "two", "emb", method="kmeans", kmeans__n_clusters=2
    )
    app.call("on_operator_done", result=out, original_params={})
    assert app.state["run_key"] == "two"
    assert sorted(app.ids()) == ["0", "1"]
    assert len(app.rows()) == 2 and len(app.bars()["x"]) == 2
    assert app.state["cluster"] is None
    assert app.view.count() == len(hdb)  # the grid left the old cluster
    app.reload_page()
    assert sorted(app.ids()) == ["0", "1"]


def test_panel_refuses_clicks_on_what_is_out_of_date(api, km):
    """A click carries its cluster: a row is resolved against the rows the
    App showed, a bar by its id and run, a button by the cluster it was
    shown for; anything shown for another run or selection is refused,
    said, and the panel reloads."""
    app = App(km)
    app.call("on_load")
    shown_table = copy.deepcopy(app.state["clusters_table"])
    shown_plot = copy.deepcopy(app.state["sizes_plot"])

    app.click_row(5)  # no such row
    assert "out of date" in app.last_warning()
    assert app.state.get("cluster") is None

    api.compute_clusters(
        km, "km2", "emb", method="kmeans", kmeans__n_clusters=2
    )
    app.call("on_change_run", value="km2")
    n = len(app.notifications)
    # the App still shows the rows and bars of run 'km'
    app.state["clusters_table"] = shown_table
    app.state["sizes_plot"] = shown_plot
    app.click_row(0)
    assert len(app.notifications) == n + 1
    assert "out of date" in app.last_warning()
    assert app.state["cluster"] is None and app.view.count() == len(km)
    assert app.state["clusters_table"]["run_key"] == "km2"  # reloaded
    app.state["sizes_plot"] = shown_plot
    app.click_bar(0)
    assert len(app.notifications) == n + 2
    assert app.state["cluster"] is None and app.view.count() == len(km)

    # a button shown for another selection
    a, b = app.ids()
    app.click_cluster(a)
    app.edit(a, "rename.label", "late")
    app.call("on_rename", cluster=b)
    assert "out of date" in app.last_warning()
    assert "km2_cluster_label" not in km.get_field_schema()


def test_panel_escapes_labels(api, km):
    """Labels from users or an LLM are text: inline code in the panel's
    Markdown (no HTML, emphasis, link or autolink in a code span), entities
    in the plot's hover text, as they are in the table."""
    view_module = importlib.import_module(
        api.__name__.rsplit(".", 1)[0] + ".panels.explorer_view"
    )
    payload = "<img src=x onerror=alert(1)>"
    markdown = "**bold** [a](http://x) `c` # h"
    big, mid, small = by_size(km)
    api.rename_cluster(km, "km", mid, payload)
    api.rename_cluster(km, "km", small, markdown)
    app = App(km)
    app.call("on_load")
    app.click_cluster(mid)
    title = app.prop("selected_title")["default"]
    assert title == f"**Cluster {mid} · `{payload}`**: 25 samples"
    hover = app.bars()["text"][app.ids().index(mid)]
    assert "<img" not in hover
    assert "&lt;img src=x onerror=alert(1)&gt;" in hover
    # the table and the merge choice show labels as they are (text)
    assert {r["cluster_id"]: r["label"] for r in app.rows()}[mid] == payload

    key = app.edit_key()
    app.edit(mid, "merge.into", small)
    app.click(key, "merge", "merge")
    question = app.prop(key, "merge_question")["default"]
    assert f"`{payload}`" in question
    # a backtick in a label: a longer fence
    assert f"``{markdown}``" in question
    assert view_module.md_label("`x`") == "`` `x` ``"
    assert view_module.md_label("a\nb  c") == "`a b c`"
    # the panel's own text escapes every ASCII punctuation character
    assert view_module.md_text("a\nb  <c>_d") == "a b &#60;c&#62;&#95;d"


def test_panel_survives_run_renamed_or_deleted(api, km):
    app = App(km)
    app.call("on_load")
    app.click_row(0)
    assert app.state["cluster"] is not None

    api.rename_clustering_run(km, "km", "km_renamed")
    app.call("on_refresh")
    state = app.state
    assert "'km' no longer exists" in state["missing"]
    assert state["run_key"] is None and state["cluster"] is None
    assert state["runs"] == ["km_renamed"]
    assert app.display()["clusters_table"]["rows"] == []
    assert app.display()["sizes_plot"] == []
    assert app.has("missing_notice") and app.has("run_key")
    assert not app.has("sizes_plot")

    app.call("on_change_run", value="km_renamed")
    assert app.state["missing"] is None
    assert len(app.rows()) == 3

    # deleted while a cluster is selected: clicking it reports, no crash
    app.click_row(1)
    api.delete_clustering_run(km, "km_renamed")
    app.click_row(0)
    assert "no longer exists" in app.state["missing"]
    assert app.state["runs"] == []
    assert app.has("no_runs")
    app.call("on_change_view")
    app.call("on_load")
    assert app.state["runs"] == []


def test_panel_cluster_gone_underneath(api, km):
    app = App(km)
    app.call("on_load")
    a, b, _ = app.ids()
    api.merge_clusters(km, "km", [a, b], into=a)
    app.click_bar(1)  # the bar of cluster b, merged away
    assert f"has no cluster '{b}'" in app.last_error()
    assert b not in app.ids()
    assert len(app.rows()) == 2


def test_panel_prompts_operators_and_refreshes_after(api, km):
    app = App(km)
    app.call("on_load")
    app.call("on_compute_clusters")
    app.call("on_label_clusters")
    app.call("on_compute_projection")
    uris = [p["operator_uri"] for p in app.prompts]
    assert uris == [
        "@curate/clustering/compute_clusters",
        "@curate/clustering/label_clusters",
        "@curate/clustering/compute_projection",
    ]
    assert app.prompts[0]["params"] == {"embeddings_field": "emb"}
    assert app.prompts[1]["params"] == {"run_key": "km"}
    assert app.prompts[2]["params"] == {"source": "run", "run_key": "km"}
    assert all(
        p["on_success"] == f"{URI}#on_operator_done" for p in app.prompts
    )

    # the prompted operator ran; the App calls back on success
    out = api.compute_clusters(
        km, "km2", "emb", method="kmeans", kmeans__n_clusters=2
    )
    app.call(
        "on_operator_done",
        result=out,
        original_params={"run_key": "km2", "embeddings_field": "emb"},
    )
    assert app.state["runs"] == ["km", "km2"]
    assert app.state["run_key"] == "km2"
    assert len(app.rows()) == 2

    # a projection result does not change the run
    app.call("on_operator_done", result={"brain_key": "umap"})
    assert app.state["run_key"] == "km2"


def test_panel_events_at_once(km, plugin):
    """The App fires events while others run (a rename adds the label
    field, the App sees the dataset change and notifies a view change):
    none of them may fail."""
    app = App(km)
    app.call("on_load")
    app.click_row(0)
    state = copy.deepcopy(app.state)
    cid = state["cluster"]
    key = app.edit_key()
    errors = []

    def fire(method, n):
        for i in range(n):
            params = {
                "__method__": method,
                "panel_id": "explorer-1",
                "panel_state": dict(
                    state, **{key: {"rename": {"label": f"name {i}"}}}
                ),
                "cluster": cid,
            }
            result = foo.execute_operator(
                URI,
                ctx={"dataset": km, "view": app.view, "params": params},
            )
            errors.append(result.error)

    threads = [threading.Thread(target=fire, args=("on_rename", 15))]
    threads += [
        threading.Thread(target=fire, args=("on_change_view", 15))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [None] * 60
    assert km.count_values("km_cluster_label") == {
        None: len(km) - 40,
        "name 14": 40,
    }
    assert app.state["cluster"] == cid


def test_panel_edit_after_run_deleted_reports_it(api, km):
    app = App(km)
    app.call("on_load")
    app.click_row(0)
    cid = app.state["cluster"]
    key = app.edit_key()
    api.delete_clustering_run(km, "km")
    app.edit(cid, "rename.label", "late")
    app.click(key, "rename", "rename")
    assert "has no clustering run 'km'" in app.last_error()
    assert "'km' no longer exists" in app.state["missing"]
    km.reload()
    assert "km_cluster_label" not in km.get_field_schema()
    # the selection went with the run: the edit buttons do nothing
    assert app.state["cluster"] is None
    n = len(app.notifications)
    app.call("on_tag", cluster=cid)
    assert len(app.notifications) == n
    assert km.count_sample_tags() == {}


@pytest.fixture
def failing_save(api, monkeypatch):
    """Makes saving run results fail, as a lost database connection
    would, after the sample fields were written."""
    import importlib

    runs = importlib.import_module(api.__name__.rsplit(".", 1)[0] + ".runs")

    def save_results(*args, **kwargs):
        raise RuntimeError("connection lost")

    monkeypatch.setattr(runs, "save_results", save_results)


def test_failed_merge_or_rename_leaves_the_dataset_as_it_was(api, km, request):
    big, mid, small = by_size(km)
    api.rename_cluster(km, "km", small, "small")
    api.rename_cluster(km, "km", mid, "middle")
    before = snapshot(km)
    request.getfixturevalue("failing_save")
    with pytest.raises(RuntimeError, match="connection lost"):
        api.merge_clusters(km, "km", [mid, small], into=small)
    assert snapshot(km) == before
    with pytest.raises(RuntimeError, match="connection lost"):
        api.rename_cluster(km, "km", mid, "other")
    assert snapshot(km) == before


def test_failed_first_rename_removes_the_new_label_field(api, km, request):
    before = snapshot(km)
    request.getfixturevalue("failing_save")
    with pytest.raises(RuntimeError, match="connection lost"):
        api.rename_cluster(km, "km", "0", "first")
    assert snapshot(km) == before


def test_panel_shows_what_the_audit_and_the_outliers_flag(api, km):
    """Purity, majority label, suspects and outliers per cluster; buttons
    that show them in the grid, most suspicious first, keep the cluster
    selected, and tag them."""
    big, mid, small = by_size(km)
    names = {big: "cat", mid: "dog", small: "bird"}
    km.set_values("animal", [names[c] for c in km.values("km_cluster")])
    wrong = km.match(F("km_cluster") == big).limit(3).values("id")
    km.select(wrong).set_values("animal", ["dog"] * 3)
    app = App(km)
    app.call("on_load")
    text = app.prop("summary_text")["default"]
    assert "noise" not in text  # k-means has none
    assert "lower is better" in text and "higher is better" in text
    # no curation columns before the actions ran
    assert "purity" not in app.rows()[0]

    api.audit_labels(km, "km", "animal")
    api.compute_outliers(km, "km", top=4)
    app.call("on_refresh")
    rows = {r["cluster_id"]: r for r in app.rows()}
    assert rows[big]["majority_label"] == "cat"
    assert rows[big]["purity"] == "92%"  # 37 of 40
    assert rows[big]["suspects"] == 3 and rows[mid]["suspects"] == 0
    assert sum(r["outliers"] for r in rows.values()) == 4
    columns = app.prop("clusters_table")["view"]["columns"]
    labels = [c["label"] for c in columns]
    assert labels[-4:] == ["Majority label", "Purity", "Suspects", "Outliers"]

    # sort by suspects: a click on its header
    app.call(
        "on_table_click",
        row=-1,
        column=labels.index("Suspects"),
        path="clusters_table",
    )
    assert app.ids()[0] == big

    # the selected cluster's suspects, most suspicious first; the App may
    # tell the panel of the new view before it applied the state patches
    # that came with it (seen in a browser on a busy machine)
    app.click_cluster(big)
    app.early_view_events = True
    app.click(app.edit_key(), "flags", "show_suspects")
    assert sorted(app.view.values("id")) == sorted(wrong)
    shown = app.view.values("km_label_suspicion")
    assert shown == sorted(shown, reverse=True)
    assert app.state["cluster"] == big  # still selected
    # the tag for them: a row of its own, not squeezed next to the buttons
    assert app.has("flag_tag", "tag") and not app.has("flag_tools", "tag")
    app.type("flag_tag.tag", "relabel")
    app.click("flag_tag", "tag_flagged")
    assert km.count_sample_tags() == {"relabel": 3}

    # every outlier of the run: the grid leaves the selected cluster, so
    # none stays selected
    app.click("flag_tools", "show_all_outliers")
    assert len(app.view) == 4
    assert app.view.first()["km_outlier"] == max(km.values("km_outlier"))
    assert app.state["cluster"] is None
    assert not app.has("selected_title")
    assert app.has("flag_tag", "tag")  # they can be tagged too
