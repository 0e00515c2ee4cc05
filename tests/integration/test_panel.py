"""The cluster explorer panel and the curation API behind it.

The panel is exercised the way the App drives it: every event is a real
execution of the panel operator through FiftyOne's operator executor, with
the panel's state sent along (``panel_state``) and the operations the panel
triggers (state and data patches, view changes, prompts, notifications)
applied by a small stand-in for the App. Dataset effects are checked in the
real database.
"""

import copy
import threading

import numpy as np
import pydash
import pytest

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone import ViewField as F

URI = "@curate/clustering/cluster_explorer"
NOISE = "-1"


# ----------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------


def blobs(sizes=(40, 25, 15), d=8, seed=0, outliers=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), d)) * 8
    parts = [c + rng.normal(size=(n, d)) for c, n in zip(centers, sizes)]
    if outliers:
        parts.append(rng.uniform(-30, 30, size=(outliers, d)))
    return np.concatenate(parts).astype(np.float32)


def make_dataset(name, X):
    ds = fo.Dataset(name)
    ds.add_samples(
        [fo.Sample(filepath=f"/nonexistent/{i}.png") for i in range(len(X))]
    )
    ds.set_values("emb", list(X))
    return ds


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


def sizes_by_id(ds, field):
    return ds.count_values(field)


def by_size(ds, field="km_cluster"):
    """Cluster ids, largest first."""
    sizes = ds.count_values(field)
    return sorted(sizes, key=lambda c: -sizes[c])


def snapshot(ds):
    ds.reload()
    schema = {k: type(v).__name__ for k, v in ds.get_field_schema().items()}
    docs = list(
        ds._sample_collection.find({}, {"last_modified_at": 0}).sort("_id")
    )
    runs = {k: ds.get_run_info(k).config.serialize() for k in ds.list_runs()}
    results = {
        k: dict(ds.load_run_results(k, cache=False).data)
        for k in ds.list_runs()
    }
    return schema, docs, runs, results


# ----------------------------------------------------------------------
# A stand-in for the App's side of the panel protocol
# ----------------------------------------------------------------------


class App:
    """Sends panel events as the App does and applies what they trigger.

    The App calls ``<panel uri>#<method>`` with ``panel_id``,
    ``panel_state`` and the event's own params (FiftyOne turns the fragment
    into the ``__method__`` param); the panel answers with triggered
    operations that patch its state and data, show its rendered schema,
    set the App's view, open operator prompts or notify.
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.view = dataset.view()
        self.state = {}
        self.data = {}
        self.schema = None
        self.prompts = []
        self.notifications = []
        self.view_changes = 0
        self.reloads = 0

    def call(self, method, **params):
        params = dict(
            params,
            __method__=method,
            panel_id="explorer-1",
            panel_state=copy.deepcopy(self.state),
        )
        result = foo.execute_operator(
            URI,
            ctx={
                "dataset": self.dataset,
                "view": self.view,
                "params": params,
            },
        )
        requests = result.to_json()["executor"]["requests"]
        view_changed = False
        for req in requests:
            view_changed |= self._apply(req["operator_uri"], req["params"])
        if view_changed:
            # The App tells the panel that its view changed
            self.view_changes += 1
            self.call("on_change_view")
        return requests

    def _apply(self, op, params):
        if op == "patch_panel_state":
            for k, v in params["state"].items():
                pydash.set_(self.state, k, copy.deepcopy(v))
        elif op == "patch_panel_data":
            for k, v in params["data"].items():
                pydash.set_(self.data, k, copy.deepcopy(v))
        elif op == "clear_panel_state":
            self.state = {}
        elif op == "clear_panel_data":
            self.data = {}
        elif op == "show_panel_output":
            self.schema = params["output"]
        elif op == "set_view":
            self.view = fo.DatasetView._build(self.dataset, params["view"])
            return True
        elif op == "clear_view":
            self.view = self.dataset.view()
            return True
        elif op == "prompt_user_for_operation":
            self.prompts.append(params)
        elif op == "notify":
            self.notifications.append(params)
        elif op in ("reload_samples", "reload_dataset"):
            self.reloads += 1
        else:
            raise AssertionError(f"Unexpected operation {op}: {params}")
        return False

    def type(self, path, value):
        """The user types into an input: the App stores it in the state."""
        pydash.set_(self.state, path, value)

    # What the rendered panel shows -------------------------------------

    def prop(self, *path):
        node = self.schema
        for name in path:
            node = node["type"]["properties"][name]
        return node

    def has(self, *path):
        try:
            self.prop(*path)
            return True
        except (KeyError, TypeError):
            return False

    def rows(self):
        table = self.data["clusters_table"]
        return [dict(zip(table["columns"], r)) for r in table["rows"]]

    def last_error(self):
        errors = [n for n in self.notifications if n["variant"] == "error"]
        return errors[-1]["message"] if errors else None


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
    assert app.data["clusters_table"]["rows"] == []
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
    assert [r["id"] for r in rows] == state["order"]
    sizes = sizes_by_id(km, "km_cluster")
    assert {r["id"]: r["size"] for r in rows} == sizes
    assert all(float(r["score_mean"]) > 0 for r in rows)
    assert all(r["in_view"] == r["size"] for r in rows)

    (trace,) = app.data["sizes_plot"]
    assert trace["type"] == "bar"
    assert trace["ids"] == state["order"]
    assert trace["y"] == [40, 25, 15]

    # The rendered schema: a plotly plot and a table wired to the panel
    plot = app.prop("sizes_plot")["view"]
    assert plot["name"] == "PlotlyView"
    assert plot["on_click"] == f"{URI}#on_plot_click"
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
    assert "kmeans" in app.prop("summary_text")["default"]
    # only inputs share a name with state (the App stores their values
    # there); everything else shown comes from the data or the schema
    inputs = {"run_key", "label_input", "tag_input", "merge_into"}
    shown = set(app.schema["type"]["properties"])
    assert shown & (set(state) | set(app.data)) <= inputs | {
        "clusters_table",
        "sizes_plot",
    }
    # state stays small: no rows or traces in it
    assert "clusters_table" not in state and "sizes_plot" not in state
    assert len(repr(state)) < 2000


def test_panel_sorts_by_clicked_header(km, plugin):
    app = App(km)
    app.call("on_load")
    assert [r["size"] for r in app.rows()] == [40, 25, 15]
    app.call("on_table_click", row=-1, column=2)  # size: toggles
    assert [r["size"] for r in app.rows()] == [15, 25, 40]
    app.call("on_table_click", row=-1, column=0)  # id ascending
    assert [r["id"] for r in app.rows()] == ["0", "1", "2"]
    assert app.state["sort_by"] == "id"
    labels = [
        c["label"] for c in app.prop("clusters_table")["view"]["columns"]
    ]
    assert labels[0] == "Cluster ▲"
    app.call("on_table_click", row=-1, column=4)  # cohesion: tightest first
    scores = [float(r["score_mean"]) for r in app.rows()]
    assert scores == sorted(scores)
    assert app.state["order"] == [r["id"] for r in app.rows()]


def test_panel_selects_cluster_and_shows_it_in_the_grid(km, plugin):
    app = App(km)
    app.call("on_load")
    order = app.state["order"]

    # click the second bar
    app.call("on_plot_click", id=order[1], idx=1, x=order[1], y=25)
    cid = order[1]
    assert app.state["cluster"] == cid
    assert app.view.count() == 25
    assert set(app.view.values("km_cluster")) == {cid}
    d = app.view.values("km_distance")
    assert d == sorted(d)  # most typical first
    assert app.view_changes == 1
    # the App's view change kept the selection
    assert app.state["cluster"] == cid
    assert app.data["clusters_table"]["selected_rows"] == [1]
    (trace,) = app.data["sizes_plot"]
    assert len(set(trace["marker"]["color"])) == 2
    in_view = {r["id"]: r["in_view"] for r in app.rows()}
    assert in_view == {c: (25 if c == cid else 0) for c in order}
    assert app.state["cluster_info"]["size"] == 25
    assert app.has("label_input") and app.has("merge_into")

    # click a table row
    app.call("on_table_click", row=2, column=1)
    assert app.state["cluster"] == order[2]
    assert app.view.count() == 15

    # back to every sample
    app.call("on_show_all")
    assert app.state["cluster"] is None
    assert app.view.count() == len(km)
    assert not app.has("label_input")

    # the user changes the view elsewhere: the selection goes
    app.call("on_plot_click", id=order[0])
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
    cid = app.state["order"][0]
    app.call("on_table_click", row=0, column=0)
    app.view = app.view.match(F("km_distance") < 100)
    app.call("on_change_view")
    assert app.state["cluster"] == cid


def test_panel_renames_tags_and_merges(api, km):
    app = App(km)
    app.call("on_load")
    order = app.state["order"]
    big, mid, small = order

    app.call("on_plot_click", id=mid)
    assert app.state["label_input"] == ""
    app.type("label_input", "medium blobs")
    app.call("on_rename")
    assert app.notifications[-1]["variant"] == "success"
    members = km.match(F("km_cluster") == mid)
    assert set(members.values("km_cluster_label")) == {"medium blobs"}
    assert {r["id"]: r["label"] for r in app.rows()}[mid] == "medium blobs"
    assert app.state["cluster_info"]["label"] == "medium blobs"
    assert "km_cluster_label" in app.prop("summary_text")["default"]

    app.type("tag_input", "check")
    app.call("on_tag")
    assert km.count_sample_tags() == {"check": 25}
    assert app.reloads >= 2

    # merge the selected cluster into the small one
    app.type("merge_into", small)
    app.call("on_merge")
    assert app.last_error() is None
    assert sizes_by_id(km, "km_cluster") == {big: 40, small: 40}
    assert app.state["cluster"] == small
    assert app.state["merge_into"] is None
    assert app.view.count() == 40
    assert set(app.view.values("km_cluster")) == {small}
    assert {r["id"]: r["size"] for r in app.rows()} == {big: 40, small: 40}
    assert app.state["order"] == [r["id"] for r in app.rows()]
    assert app.state["summary"]["n_clusters"] == 2
    assert app.state["summary"]["n_edits"] == 2
    results = api.load_clustering_results(km, "km")
    assert results["clusters"][small]["size"] == 40
    assert mid not in results["clusters"]


def test_panel_reports_bad_edits_without_writing(km, plugin):
    app = App(km)
    app.call("on_load")
    app.call("on_table_click", row=0, column=0)
    before = snapshot(km)
    app.type("label_input", "   ")
    app.call("on_rename")
    assert "label must be a non-empty string" in app.last_error()
    app.type("tag_input", "")
    app.call("on_tag")
    assert "tag must be a non-empty string" in app.last_error()
    app.call("on_merge")
    assert "Choose the cluster to merge into" in app.last_error()
    assert snapshot(km) == before


def test_panel_shows_noise_as_such(hdb, plugin):
    app = App(hdb)
    app.call("on_load")
    rows = app.rows()
    assert rows[-1]["id"] == "-1 (noise)"
    assert app.state["order"][-1] == NOISE
    (trace,) = app.data["sizes_plot"]
    assert trace["x"][-1] == "noise"
    assert trace["ids"][-1] == NOISE
    assert "strength" in app.prop("summary_text")["default"]

    n_noise = sizes_by_id(hdb, "hd_cluster")[NOISE]
    app.call("on_plot_click", id=NOISE)
    assert app.view.count() == n_noise
    assert app.state["cluster"] == NOISE
    assert "Noise" in app.prop("selected_title")["default"]
    assert not app.has("label_input") and not app.has("merge_into")
    assert app.has("tag_input")
    # sorting keeps the noise bucket last
    app.call("on_table_click", row=-1, column=2)
    assert app.state["order"][-1] == NOISE


def test_panel_survives_run_renamed_or_deleted(api, km):
    app = App(km)
    app.call("on_load")
    app.call("on_table_click", row=0, column=0)
    assert app.state["cluster"] is not None

    api.rename_clustering_run(km, "km", "km_renamed")
    app.call("on_refresh")
    state = app.state
    assert "'km' no longer exists" in state["missing"]
    assert state["run_key"] is None and state["cluster"] is None
    assert state["runs"] == ["km_renamed"]
    assert app.data["clusters_table"]["rows"] == []
    assert app.data["sizes_plot"] == []
    assert app.has("missing_notice") and app.has("run_key")
    assert not app.has("sizes_plot")

    app.call("on_change_run", value="km_renamed")
    assert app.state["missing"] is None
    assert len(app.rows()) == 3

    # deleted while a cluster is selected: clicking it reports, no crash
    app.call("on_table_click", row=1, column=0)
    api.delete_clustering_run(km, "km_renamed")
    app.call("on_table_click", row=0, column=0)
    assert "no longer exists" in app.state["missing"]
    assert app.state["runs"] == []
    assert app.has("no_runs")
    app.call("on_change_view")
    app.call("on_load")
    assert app.state["runs"] == []


def test_panel_cluster_gone_underneath(api, km):
    app = App(km)
    app.call("on_load")
    a, b, _ = app.state["order"]
    api.merge_clusters(km, "km", [a, b], into=a)
    app.call("on_plot_click", id=b)  # a stale bar
    assert f"has no cluster '{b}'" in app.last_error()
    assert b not in app.state["order"]
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
    app.call("on_table_click", row=0, column=0)
    state = copy.deepcopy(app.state)
    errors = []

    def fire(method, n):
        for i in range(n):
            params = {
                "__method__": method,
                "panel_id": "explorer-1",
                "panel_state": dict(state, label_input=f"name {i}"),
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
    cid = state["cluster"]
    assert km.count_values("km_cluster_label") == {
        None: len(km) - 40,
        "name 14": 40,
    }
    assert app.state["cluster"] == cid


def test_panel_edit_after_run_deleted_reports_it(api, km):
    app = App(km)
    app.call("on_load")
    app.call("on_table_click", row=0, column=0)
    api.delete_clustering_run(km, "km")
    app.type("label_input", "late")
    app.call("on_rename")
    assert "has no clustering run 'km'" in app.last_error()
    assert "'km' no longer exists" in app.state["missing"]
    km.reload()
    assert "km_cluster_label" not in km.get_field_schema()
    # the selection went with the run: the edit buttons do nothing
    assert app.state["cluster"] is None
    n = len(app.notifications)
    app.type("tag_input", "late")
    app.call("on_tag")
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
