"""Assigning, comparing and stability on plain arrays: fitted samples get
their own ids back, every method's stored model assigns, verdicts and
stability on synthetic data."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler


def _digits():
    d = load_digits()
    return StandardScaler().fit_transform(d.data).astype(np.float32)


def _fit(core, X, method, reduce, **params):
    red = core.reduce
    Z, reducer = red.preprocess(
        X.copy(),
        True,
        reduce,
        red.REDUCERS.resolve(reduce, {}) if reduce != "none" else {},
    )
    fitted = core.methods.METHODS.get(method)(**params).fit(Z)
    state = core.assign.fit_state(
        fitted, fitted.labels_, Z, True, reduce, reducer, X=X.copy()
    )
    return fitted, core.assign.unpack(core.assign.pack(state))


@pytest.mark.parametrize(
    "method,reduce,params,floor",
    [
        ("kmeans", "none", dict(n_clusters=10), 0.99),
        ("hdbscan", "umap", {}, 0.95),
        ("gaussian_mixture", "none", dict(n_clusters=10), 0.95),
        ("birch", "none", dict(n_clusters=10), 0.95),
        ("minibatch_kmeans", "pca", dict(n_clusters=10), 0.95),
        ("agglomerative", "none", dict(n_clusters=10), 0.85),
        ("dbscan", "umap", dict(eps=0.5), 0.95),
    ],
)
def test_fitted_samples_get_their_own_ids(
    core_package, method, reduce, params, floor
):
    X = _digits()
    fitted, state = _fit(core_package, X, method, reduce, **params)
    labels, scores, novel = core_package.assign.assign(state, X.copy())
    share = (labels == fitted.labels_).mean()
    assert share >= floor, share
    assert novel.mean() < 0.02
    assert state["input_dim"] == 64


def test_far_samples_are_novel_and_get_noise(core_package):
    # tight clusters, as image embeddings form; far: other directions
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 64)).astype(np.float32)
    X = centres[rng.integers(0, 10, 2000)]
    X += 0.3 * rng.normal(size=X.shape).astype(np.float32)
    _, state = _fit(core_package, X, "kmeans", "none", n_clusters=10)
    far = rng.normal(size=(20, 64)).astype(np.float32)
    labels, scores, novel = core_package.assign.assign(state, far)
    assert novel.all() and (labels == -1).all() and np.isnan(scores).all()


def test_compare_verdicts(core_package):
    cmp = core_package.compare
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 3000).astype(str)
    same = cmp.compare(a, a)
    assert same["ari"] == pytest.approx(1) and same["ami"] == pytest.approx(1)
    assert {c["verdict"] for c in same["clusters"]} == {"kept"}
    b = np.where(a == "4", "3", a)  # 3 and 4 merged
    b = np.where((a == "0") & (rng.random(3000) < 0.5), "9", b)  # 0 split
    b[:50] = "-1"
    out = cmp.compare(a, b)
    events = {e["verdict"]: e for e in out["events"] if e["verdict"] != "kept"}
    assert events["merged"]["a"] == ["3", "4"] and events["merged"]["b"] == [
        "3"
    ]
    assert events["split"]["a"] == ["0"] and events["split"]["b"] == ["0", "9"]
    assert "-1" not in {c["id"] for c in out["clusters"]}
    gone = cmp.compare(a, np.where(a == "5", "-1", a))
    assert [e["a"] for e in gone["events"] if e["verdict"] == "gone"] == [
        ["5"]
    ]
    new = cmp.compare(np.where(a == "5", "-1", a), a)
    assert [e["b"] for e in new["events"] if e["verdict"] == "new"] == [["5"]]


def test_stability_of_separated_and_forced_split_components(core_package):
    methods, cmp = core_package.methods, core_package.compare
    rng = np.random.default_rng(0)
    X = np.vstack(
        [c + rng.normal(size=(300, 10)) for c in np.eye(10)[:3] * 20]
    ).astype(np.float32)
    for k in (3, 4):
        km = methods.METHODS.get("kmeans")
        labels = km(n_clusters=k).fit(X).labels_

        def fit(rows, seed):
            return km(n_clusters=k, random_state=seed).fit(X[rows]).labels_

        values = cmp.stability(fit, labels, 20)
        if k == 3:
            assert min(values.values()) > cmp.STABLE
        else:
            halves = [c for c in values if np.bincount(labels)[c] < 200]
            assert min(values[c] for c in halves) < cmp.DISSOLVING
