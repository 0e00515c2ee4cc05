"""Pure helpers shared across capabilities: progress and timing, cluster
summaries and merges, the colour-by values, and the neighbour graph a
reducer hands to a projection."""

import numpy as np
import pytest

import synthetic  # noqa: E402 (made importable by conftest)


@pytest.fixture(scope="module")
def core(core_package):
    return core_package


def test_stages_share_one_scale_and_time_each_stage(core):
    calls = []
    stages = core.progress.Stages(
        lambda f, label=None: calls.append((round(f, 3), label)),
        {"reading": 1, "fitting": 3},
    )
    with stages("reading", "read") as report:
        report(0.5)
    with stages("fitting", "fit") as report:
        report(1.0, "epoch 9")
        report(7.0)  # out of range: clamped to the stage's end
    with stages("summing"):  # no weight: timed only
        pass
    stages.done()
    assert calls == [
        (0.0, "reading"),
        (0.125, "reading"),
        (0.25, "fitting"),
        (1.0, "epoch 9"),
        (1.0, "fitting"),
        (1.0, "done"),
    ]
    timings = stages.timings()
    assert set(timings) == {"read_s", "fit_s", "summing_s", "total_s"}
    assert all(v >= 0 for v in timings.values())


def test_span_and_items_without_a_callback(core):
    core.progress.span(None, 0.2, 0.4)(0.5)  # nothing to call: no error
    seen = []
    items = core.progress.ItemProgress(4, lambda f, label: seen.append(label))
    items.update(1)
    items.update(3)
    assert seen[-1].startswith("4/4 images,") and items.done == 4


def test_summary_of_a_mixture_keeps_its_probabilities(core):
    X, y = synthetic.blobs(300, k=3, d=8)
    gm = core.methods.METHODS.get("gaussian_mixture")(
        n_clusters=3, random_state=0
    )
    fitted = gm.fit(X)
    assert fitted.score_kind == "probability"
    s = core.summary.summarize(X, X, fitted.labels_, fitted)
    np.testing.assert_array_equal(s["scores"], fitted.scores_)
    for cid, c in s["clusters"].items():
        members = np.flatnonzero(fitted.labels_ == int(cid))
        assert c["size"] == len(members)
        best = fitted.scores_[members].max()
        # the most typical member has the highest probability
        assert fitted.scores_[c["representatives"][0]] == best
        assert c["score_mean"] == pytest.approx(
            fitted.scores_[members].mean(), rel=1e-5
        )


def test_summary_of_kmeans_scores_distances(core):
    X, _ = synthetic.blobs(200, k=4, d=6)
    fitted = core.methods.METHODS.get("kmeans")(n_clusters=4).fit(X)
    assert fitted.scores_ is None
    s = core.summary.summarize(X, X, fitted.labels_, fitted)
    c = s["clusters"]["0"]
    centroid = np.asarray(c["centroid"], dtype=np.float32)
    members = np.flatnonzero(fitted.labels_ == 0)
    d = np.linalg.norm(X[members] - centroid, axis=1)
    assert s["scores"][c["representatives"][0]] == pytest.approx(d.min())


def test_merge_weights_by_size(core):
    parts = [
        dict(size=3, centroid=[0.0, 0.0], score_mean=1.0),
        dict(size=1, centroid=[4.0, 8.0], score_mean=3.0, label="cats"),
    ]
    m = core.summary.merge(parts)
    assert m["size"] == 4 and m["label"] == "cats"
    assert m["centroid"] == pytest.approx([1.0, 2.0])
    assert m["score_mean"] == pytest.approx(1.5)
    parts[1]["centroid"] = None
    assert core.summary.merge(parts)["centroid"] == [0.0, 0.0]


def test_top_values_keep_the_most_frequent(core):
    labels = ["1", "2", "2", None, "3", "3", "3", "10", "10", "10"]
    out = core.summary.top_values(labels, keep=2)
    assert out == [
        "other",
        "other",
        "other",
        None,
        "3",
        "3",
        "3",
        "10",
        "10",
        "10",
    ]
    # ties go to the smaller id
    assert core.summary.top_values(["5", "4"], keep=1) == ["other", "4"]


def test_a_projection_reuses_the_graph_its_reducer_hands_on(core, monkeypatch):
    X, _ = synthetic.blobs(400, k=4, d=16)
    calls = []
    real = core.neighbors.knn_graph

    def counted(features, n_neighbors, *args, **kwargs):
        calls.append(n_neighbors)
        return real(features, n_neighbors, *args, **kwargs)

    monkeypatch.setattr(core.neighbors, "knn_graph", counted)
    Z, reducer = core.reduce.preprocess(
        X.copy(), True, "umap", {"n_epochs": 20}, knn_neighbors=15
    )
    assert isinstance(reducer.graph_, core.neighbors.NeighborGraph)
    projector = core.projection.PROJECTIONS.get("umap")(umap__n_epochs=20)
    Y = projector.fit_transform(X, graph=reducer.graph_)
    assert Y.shape == (400, 2) and calls == [15]
    # another metric: the features and the graph are computed anew
    other = core.projection.PROJECTIONS.get("umap")(
        umap__metric="euclidean", umap__n_epochs=20
    )
    other.fit_transform(X, graph=reducer.graph_)
    assert calls == [15, 15]
    # a reduction without a graph hands nothing on
    _, pca = core.reduce.preprocess(X.copy(), True, "pca", {})
    assert pca.graph_ is None
