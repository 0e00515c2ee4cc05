"""2-D projections and the neighbour graph they share with the reduction
before clustering, on plain arrays."""

import numpy as np
import pytest

import synthetic  # noqa: E402 (made importable by conftest)

blobs = synthetic.blobs
knn_accuracy = synthetic.knn_accuracy


@pytest.fixture(scope="module")
def core(core_package):
    return core_package.projection


@pytest.fixture(scope="module")
def neighbors(core_package):
    return core_package.neighbors


def test_registry_resolves_form_params(core):
    assert core.PROJECTIONS.names() == ["umap", "pca", "tsne"]
    p = core.PROJECTIONS.resolve(
        "umap",
        {"umap__n_neighbors": 30, "tsne__perplexity": 5.0, "pca__metric": "x"},
    )
    assert p["n_neighbors"] == 30
    assert p["metric"] == "cosine"
    assert p["fit_samples"] == 20000
    with pytest.raises(ValueError, match="Valid parameters"):
        core.PROJECTIONS.resolve("umap", {"umap__neighbours": 3})
    with pytest.raises(ValueError, match="Choose one of: umap, pca, tsne"):
        core.PROJECTIONS.get("isomap")


def test_knn_graph_is_exact_and_self_first(neighbors):
    from sklearn.neighbors import NearestNeighbors

    X, _ = blobs(500, d=8)
    X[1] = X[0]  # a duplicate must still list itself first
    I, D = neighbors.knn_graph(X, 6)
    assert I.shape == D.shape == (500, 6)
    assert (I[:, 0] == np.arange(500)).all()
    assert (D[:, 0] == 0).all()
    _, ref = NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X)
    agree = np.mean([len(set(a) & set(b)) / 6 for a, b in zip(I, ref)])
    assert agree > 0.99
    I2, _ = neighbors.knn_graph(X, 6, exact=False)
    agree = np.mean([len(set(a) & set(b)) / 6 for a, b in zip(I2, ref)])
    assert agree > 0.95


def test_prepare_features_bounds_the_pca_sample(neighbors):
    X, _ = blobs(3000, d=80)
    F = neighbors.prepare_features(X, "cosine", fit_rows=1000)
    assert F.shape == (3000, neighbors.FEATURE_DIM) and F.dtype == np.float32
    # cosine: the PCA of unit vectors, so scaling a row changes nothing
    X2 = X.copy()
    X2[:10] *= 7.0
    F2 = neighbors.prepare_features(X2, "cosine", fit_rows=1000)
    np.testing.assert_allclose(F, F2, atol=1e-4)
    # low-dimensional inputs are only normalised
    G = neighbors.prepare_features(X[:, :20], "euclidean")
    np.testing.assert_array_equal(G, X[:, :20])


def test_pca_projection_matches_scikit_learn(core):
    from sklearn.decomposition import PCA

    X, _ = blobs(400, d=16)
    Y = core.PROJECTIONS.get("pca")(pca__metric="euclidean").fit_transform(X)
    ref = PCA(2).fit_transform(X)
    for j in range(2):
        corr = np.corrcoef(Y[:, j], ref[:, j])[0, 1]
        assert abs(corr) > 0.999


def test_umap_fits_a_sample_and_places_the_rest(core, neighbors):
    X, y = blobs(3000, k=6, d=64)
    calls = []
    umap = core.PROJECTIONS.get("umap")(umap__fit_samples=1000)
    Y = umap.fit_transform(X, progress=lambda f, label=None: calls.append(f))
    assert Y.shape == (3000, 2) and Y.dtype == np.float32
    assert np.isfinite(Y).all()
    assert knn_accuracy(Y, y) > 0.95
    assert calls == sorted(calls) and calls[-1] == pytest.approx(1.0)

    # a precomputed graph over all points is used as is
    F = neighbors.prepare_features(X[:1500], "cosine")
    knn = neighbors.knn_graph(F, 15)
    Y2 = core.project_umap(F, fit_samples=None, knn=knn, n_epochs=50)
    assert knn_accuracy(Y2, y[:1500]) > 0.95
    # and the same graph gives a clustering run its 10-D reduction
    Z = neighbors.umap_embed(
        F, knn, n_components=10, min_dist=0.0, n_epochs=50
    )
    assert Z.shape == (1500, 10) and Z.dtype == np.float32


def test_place_points_uses_nearest_fitted_points(neighbors):
    fit = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    layout = np.array([[1, 1], [5, 5], [9, 9]], np.float32)
    new = np.array([[0.1, 0.0], [9.9, 0.1]], np.float32)
    Y = neighbors.place_points(fit, layout, new, n_neighbors=1)
    np.testing.assert_allclose(Y, [[1, 1], [5, 5]])


def test_projection_rejects_too_few_samples(core):
    X, _ = blobs(10)
    with pytest.raises(ValueError, match="umap__n_neighbors=15"):
        core.PROJECTIONS.get("umap")().fit_transform(X)
    with pytest.raises(ValueError, match="tsne__perplexity=30"):
        core.PROJECTIONS.get("tsne")().fit_transform(X)
