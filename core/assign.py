"""Assigning samples a clustering run did not see to its clusters.

When a run is computed, :func:`fit_state` keeps what assigning needs, and
nothing of the embeddings themselves:

- the preprocessing: whether rows were L2-normalised, the PCA (mean and
  components) of a ``pca`` reduction, and for a ``umap`` reduction the
  PCA of its neighbour-search features plus a bounded random sample of
  at most :data:`ANCHORS` fitted rows (their 50-dimensional search
  features and their UMAP coordinates). A new row is placed on its
  nearest sampled row: on the digits (80% fitted, 20% new) the weighted
  mean of 10 neighbours that :func:`.neighbors.place_points` uses for
  layouts put 3.1% of the new rows between clusters, where HDBSCAN calls
  them noise (its own fit: 0.6%), and the share landing in a cluster of
  their own digit fell from 0.873 to 0.844; on the nearest row: 0.867;
- the method's model, as the method declares in ``assigns``:
  ``"centroids"`` (k-means, mini-batch k-means, agglomerative: the
  nearest cluster centre), ``"model"`` (BIRCH: its subcluster centres,
  at most :data:`ANCHORS` of them; Gaussian mixture: weights, means and
  covariances), ``"hdbscan"`` (approximate prediction as in
  ``hdbscan.approximate_predict``, on the condensed tree's cluster tree and
  a bounded sample of at most :data:`ANCHORS` fitted points in the
  clustered space with their core distances and the density level at which
  each left its cluster), ``"core_samples"`` (DBSCAN: at most
  :data:`ANCHORS` core samples; a new row joins its nearest core sample's
  cluster when it lies within ``eps``);
- for novelty, each cluster's centre in the clustered space and the
  median and 99th percentile of its members' distances to it. A new row
  whose distance to its nearest centre exceeds the median by more than
  ``novelty_factor`` times (99th percentile - median) is *novel*: it gets
  the noise id, whatever the method predicts. (On unit vectors every
  distance is at most 2, so a multiple of the radius alone would flag
  nothing.) After a UMAP reduction, whose layout has no "far", the same
  rule applies to the new row's distance to its nearest sampled row in
  the search features, against the sampled rows' own nearest-neighbour
  distances, and also to the norm of what the reduction's PCA leaves out
  of the row (a row outside the subspace the fitted rows span looks
  ordinary once projected into it).

The state is a dict of float32/int arrays and JSON scalars;
:func:`pack` / :func:`unpack` turn it into one compressed string.
"""

import base64
import io
import json

import numpy as np

from . import neighbors
from .metrics import NOISE, centroids
from .schema import ParamError

# The most fitted points (or subcluster centres, core samples) kept where a
# method inherently needs fitted points
ANCHORS = 20000

# A cluster's radius: this quantile of its members' distances to its centre
RADIUS_QUANTILE = 0.99

# State format; a stored state of another version must be recomputed
VERSION = 1


def fit_state(
    fitted, labels, Z, normalize, reduce, reducer=None, X=None, seed=51
):
    """What :func:`assign` needs, from a finished fit.

    Args:
        fitted: the fitted :class:`.methods.ClusteringMethod`
        labels: its ``n`` integer labels (``-1`` noise)
        Z: the ``n x c`` features it clustered
        normalize: whether the embeddings were L2-normalised first
        reduce: ``"none"``, ``"pca"`` or ``"umap"``
        reducer (None): the fitted reducer (with ``transform_``)
        X (None): the embeddings (normalised as clustered); needed with
            a reduction, whose PCA residuals tell novelty
        seed (51): seed of the bounded samples

    Returns:
        a dict (see :func:`pack`)
    """
    rng = np.random.default_rng(seed)
    n = len(Z)
    state = dict(
        version=VERSION,
        assigns=fitted.assigns,
        method=fitted.name,
        normalize=bool(normalize),
        reduce=reduce,
        n_fitted=n,
        input_dim=None if X is None else int(X.shape[1]),
    )
    residual = np.zeros(n, dtype=np.float32)
    if reduce != "none":
        for key, value in reducer.transform_.items():
            state[f"reduce_{key}"] = value
        residual = _residuals(state, X)
    if reduce == "umap":
        idx = _bounded(n, rng)
        state["umap_features"] = reducer.graph_.features[idx]
        state["umap_points"] = Z[idx]
        _, D = _knn(state["umap_features"], state["umap_features"], 2)
        far = np.hypot(D[:, 1], residual[idx])
        state["umap_spread"] = np.quantile(far, [0.5, RADIUS_QUANTILE]).astype(
            np.float32
        )
    real = np.unique(labels[labels != NOISE])
    C = centroids(Z, labels, real)
    state["centre_labels"] = real.astype(np.int64)
    state["centres"] = C
    state["radii"] = _radii(Z, labels, real, C, residual)
    _METHOD_STATES[fitted.assigns](state, fitted, labels, Z, rng)
    return state


def _bounded(n, rng, size=ANCHORS):
    """Sorted indices of at most ``size`` of ``n`` rows."""
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size, replace=False))


def _radii(Z, labels, real, C, residual):
    """Per cluster, the median of its members' distances to its centre
    (their PCA residuals included) and that median times the
    :data:`RADIUS_QUANTILE` quantile of every member's distance over its
    cluster's median (pooled, so that small clusters get a stable
    spread): ``k x 2``."""
    from .metrics import _positions, distances_to_centroids

    d = np.hypot(distances_to_centroids(Z, labels, real, C), residual)
    which = _positions(labels, real)
    ok = (which >= 0) & ~np.isnan(d)
    medians = np.zeros(len(real), dtype=np.float32)
    for i in range(len(real)):
        members = d[ok & (which == i)]
        medians[i] = np.median(members) if len(members) else 0
    relative = d[ok] / np.maximum(medians[which[ok]], 1e-12)
    high = np.quantile(relative, RADIUS_QUANTILE) if len(relative) else 1
    return np.stack([medians, medians * high], axis=1).astype(np.float32)


def _beyond(d, spread, factor):
    """Whether distances ``d`` lie more than ``factor`` times the spread
    ``(median, q99)`` beyond the median (rows of ``spread`` align with
    ``d``)."""
    median, high = spread[:, 0], spread[:, 1]
    return d > median + factor * np.maximum(high - median, 1e-12)


def _state_centroids(state, fitted, labels, Z, rng):
    state["labels_of"] = state["centre_labels"]
    C = getattr(fitted, "cluster_centers_", None)
    state["model_centres"] = (
        state["centres"] if C is None else np.asarray(C, np.float32)
    )
    if C is not None:
        state["labels_of"] = np.arange(len(C), dtype=np.int64)


def _state_model(state, fitted, labels, Z, rng):
    model = fitted.model_
    if fitted.name == "birch":
        C = np.asarray(model.subcluster_centers_, np.float32)
        keep = _bounded(len(C), rng)
        state["model_centres"] = C[keep]
        state["labels_of"] = np.asarray(model.subcluster_labels_)[keep]
        state["subclusters_total"] = int(len(C))
        return
    state["gmm_covariance_type"] = str(model.covariance_type)
    state["gmm_weights"] = model.weights_.astype(np.float64)
    state["gmm_means"] = model.means_.astype(np.float64)
    state["gmm_covariances"] = model.covariances_.astype(np.float64)


def _state_core_samples(state, fitted, labels, Z, rng):
    model = fitted.model_
    core = np.asarray(model.core_sample_indices_, dtype=np.int64)
    core = core[_bounded(len(core), rng)]
    state["core_points"] = Z[core]
    state["core_labels"] = labels[core]
    state["core_eps"] = float(model.eps)
    state["core_metric"] = str(model.metric)


def _state_hdbscan(state, fitted, labels, Z, rng):
    model = fitted.model_
    tree = model.condensed_tree_._raw_tree
    n = len(Z)
    min_samples = int(fitted.min_samples_)
    idx = _bounded(n, rng)
    # each point's row: the cluster it left and the lambda it left at
    points = tree[tree["child_size"] == 1]
    parent_of = np.full(n, -1, dtype=np.int64)
    lambda_of = np.zeros(n, dtype=np.float64)
    parent_of[points["child"]] = points["parent"]
    lambda_of[points["child"]] = points["lambda_val"]
    # core distances of the sampled points, against every fitted point
    k = min(n, min_samples + 1)
    _, D = _knn(Z, Z[idx], k)
    state["hdb_points"] = Z[idx]
    state["hdb_core"] = D[:, -1].astype(np.float32)
    state["hdb_parent"] = parent_of[idx]
    state["hdb_lambda"] = lambda_of[idx]
    state["hdb_min_samples"] = min_samples
    _cluster_tree(state, tree, model, n, labels)


def _cluster_tree(state, tree, model, n, labels):
    """Dense arrays over the condensed tree's clusters (node ``n + i`` is
    row ``i``): parent, birth lambda, and the run's label of the selected
    cluster at or above it (-1 if none)."""
    clusters = tree[tree["child_size"] > 1]
    size = int(max(tree["parent"].max(), clusters["child"].max(initial=n)))
    size = size - n + 1
    parent = np.full(size, -1, dtype=np.int64)
    birth = np.zeros(size, dtype=np.float64)
    parent[clusters["child"] - n] = clusters["parent"] - n
    birth[clusters["child"] - n] = clusters["lambda_val"]
    selected = sorted(model.condensed_tree_._select_clusters())
    label = np.full(size, -1, dtype=np.int64)
    max_lambda = np.ones(max(1, len(selected)), dtype=np.float64)
    for i, node in enumerate(selected):
        label[node - n] = i
        inside = tree["lambda_val"][tree["parent"] == node]
        max_lambda[i] = inside.max() if len(inside) else 1.0
    # propagate selected labels downwards (parents come before children)
    for node in range(size):
        if label[node] < 0 and parent[node] >= 0:
            label[node] = label[parent[node]]
    state["hdb_tree_parent"] = parent
    state["hdb_tree_birth"] = birth
    state["hdb_tree_label"] = label
    state["hdb_max_lambda"] = max_lambda


_METHOD_STATES = dict(
    centroids=_state_centroids,
    model=_state_model,
    core_samples=_state_core_samples,
    hdbscan=_state_hdbscan,
)


def _knn(base, queries, k):
    """``(indices, distances)`` of the ``k`` nearest rows of ``base`` for
    each row of ``queries`` (Euclidean, exact)."""
    import faiss

    base = np.ascontiguousarray(base, dtype=np.float32)
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    k = min(k, len(base))
    I = np.empty((len(queries), k), dtype=np.int64)
    D = np.empty((len(queries), k), dtype=np.float32)
    for s in range(0, len(queries), neighbors.CHUNK):
        q = np.ascontiguousarray(queries[s : s + neighbors.CHUNK], np.float32)
        D[s : s + len(q)], I[s : s + len(q)] = index.search(q, k)
    np.sqrt(np.maximum(D, 0, out=D), out=D)
    return I, D


def features(state, X):
    """The run's clustered features of new embeddings ``X`` (``n x d``
    float32; modified in place when the run normalised)."""
    if state["normalize"]:
        X = neighbors.l2_normalize(X)
    reduce = state["reduce"]
    if reduce == "none":
        return X
    if reduce == "pca":
        out = np.empty((len(X), len(state["reduce_components"])), np.float32)
        for s in range(0, len(X), neighbors.CHUNK):
            chunk = X[s : s + neighbors.CHUNK] - state["reduce_mean"]
            out[s : s + len(chunk)] = chunk @ state["reduce_components"].T
        return out
    keep = {
        k[len("reduce_") :]: state[k] for k in state if k.startswith("reduce_")
    }
    F = neighbors.apply_features(X, keep)
    return F


def _residuals(state, X):
    """The norm of what the reduction's PCA leaves out of each row of
    ``X`` (zero where there is no PCA)."""
    mean = state.get("reduce_mean")
    out = np.zeros(len(X), dtype=np.float32)
    if mean is None:
        return out
    P = state["reduce_components"]
    if state["reduce"] == "umap":  # prepare_features keeps d x k
        P = P.T
    for s in range(0, len(X), neighbors.CHUNK):
        chunk = np.array(X[s : s + neighbors.CHUNK], dtype=np.float32)
        if state.get("reduce_cosine"):
            neighbors.l2_normalize(chunk)
        chunk -= mean
        kept = chunk @ P.T
        r2 = np.einsum("ij,ij->i", chunk, chunk)
        r2 -= np.einsum("ij,ij->i", kept, kept)
        out[s : s + len(chunk)] = np.sqrt(np.maximum(r2, 0))
    return out


def _place(state, F):
    """New rows' UMAP positions: each on its nearest sampled fitted row
    , and that row's distance in the search
     features."""
    I, D = _knn(state["umap_features"], F, 1)
    return state["umap_points"][I[:, 0]], D[:, 0]


def assign(state, X, novelty_factor=1.3):
    """Assigns new rows to a run's clusters.

    Args:
        state: a dict from :func:`fit_state` (or :func:`unpack`)
        X: ``n x d`` float32 embeddings of the new samples (modified in
            place when the run normalised)
        novelty_factor (1.3): how far beyond its nearest cluster's usual
            distances (median + factor x (99th percentile - median)) a row
            is novel

    Returns:
        ``(labels, scores, novel)``: int64 labels in the run's fitted ids
        (``-1`` noise), float32 per-sample scores of the method's kind
        (NaN where none) and a bool novelty flag

    Raises:
        ParamError: if ``X`` has another dimension than the run's input
    """
    if not novelty_factor or novelty_factor <= 0:
        raise ParamError(f"novelty_factor must be > 0; got {novelty_factor}")
    if state["normalize"]:
        X = neighbors.l2_normalize(X)
    residual = _residuals(state, X)
    Z = features(state, X)
    if state["reduce"] == "umap":
        Z, nearest = _place(state, Z)
        spread = np.broadcast_to(state["umap_spread"], (len(Z), 2))
        novel = _beyond(np.hypot(nearest, residual), spread, novelty_factor)
    else:
        novel = _novel(state, Z, residual, novelty_factor)
    labels, scores = _PREDICT[state["assigns"]](state, Z)
    labels = np.where(novel, NOISE, labels).astype(np.int64)
    scores = np.where(novel | (labels == NOISE), np.nan, scores)
    return labels, scores.astype(np.float32), novel


def _novel(state, Z, residual, factor):
    C = state["centres"]
    if len(C) == 0:
        return np.ones(len(Z), dtype=bool)
    I, D = _knn(C, Z, 1)
    far = np.hypot(D[:, 0], residual)
    return _beyond(far, state["radii"][I[:, 0]], factor)


def _predict_centres(state, Z):
    I, D = _knn(state["model_centres"], Z, 1)
    return state["labels_of"][I[:, 0]], D[:, 0]


def _predict_model(state, Z):
    if "model_centres" in state:  # BIRCH: nearest subcluster
        labels, _ = _predict_centres(state, Z)
        return labels, _centre_distances(state, Z, labels)
    from sklearn.mixture import GaussianMixture
    from sklearn.mixture._gaussian_mixture import (
        _compute_precision_cholesky,
    )

    cov_type = str(state["gmm_covariance_type"])
    gm = GaussianMixture(len(state["gmm_weights"]), covariance_type=cov_type)
    gm.weights_ = state["gmm_weights"]
    gm.means_ = state["gmm_means"]
    gm.covariances_ = state["gmm_covariances"]
    gm.precisions_cholesky_ = _compute_precision_cholesky(
        gm.covariances_, cov_type
    )
    proba = gm.predict_proba(Z.astype(np.float64))
    return proba.argmax(axis=1), proba.max(axis=1)


def _centre_distances(state, Z, labels):
    """Distance of each row to its label's centre (NaN for noise), chunk
    by chunk (a copy of ``Z`` would double the memory at 1M rows)."""
    real = state["centre_labels"]  # sorted (np.unique)
    out = np.full(len(Z), np.nan, dtype=np.float32)
    if not len(real):
        return out
    pos = np.minimum(np.searchsorted(real, labels), len(real) - 1)
    rows = np.where(real[pos] == labels, pos, -1)
    for s in range(0, len(Z), neighbors.CHUNK):
        r = rows[s : s + neighbors.CHUNK]
        ok = r >= 0
        diff = Z[s : s + neighbors.CHUNK][ok] - state["centres"][r[ok]]
        out[s : s + neighbors.CHUNK][ok] = np.sqrt(
            np.einsum("ij,ij->i", diff, diff)
        )
    return out


def _predict_centroids(state, Z):
    labels, _ = _predict_centres(state, Z)
    return labels, _centre_distances(state, Z, labels)


def _predict_core_samples(state, Z):
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=1, metric=str(state["core_metric"]))
    nn.fit(state["core_points"])
    D, I = nn.kneighbors(Z)
    labels = state["core_labels"][I[:, 0]]
    labels = np.where(D[:, 0] <= state["core_eps"], labels, NOISE)
    return labels, _centre_distances(state, Z, labels)


def _predict_hdbscan(state, Z):
    """``hdbscan.approximate_predict`` on the stored sample: the nearest
    sampled point by mutual reachability, its cluster at the new point's
    density level, and the membership strength there."""
    P = state["hdb_points"]
    m = len(P)
    n_fit = int(state["n_fitted"])
    ms = int(state["hdb_min_samples"])
    # the k-th nearest of a sample of m among n points estimates the
    # (k n / m)-th nearest of all: the new point's core distance
    k_core = int(min(m - 1, max(1, round(ms * m / n_fit))))
    I, D = _knn(P, Z, min(m, 2 * k_core + 1))
    core_q = D[:, min(k_core, D.shape[1] - 1)]
    mr = np.maximum(np.maximum(state["hdb_core"][I], D), core_q[:, None])
    best = mr.argmin(axis=1)
    rows = np.arange(len(Z))
    near = I[rows, best]
    with np.errstate(divide="ignore"):
        lam = np.where(mr[rows, best] > 0, 1.0 / mr[rows, best], np.inf)
    lam = np.minimum(lam, state["hdb_lambda"][near])
    node = state["hdb_parent"][near] - n_fit
    parent = state["hdb_tree_parent"]
    birth = state["hdb_tree_birth"]
    active = np.ones(len(Z), dtype=bool)
    while active.any():
        up = active & (parent[node] >= 0) & (birth[node] >= lam)
        node = np.where(up, parent[node], node)
        active = up
    labels = state["hdb_tree_label"][node]
    max_lambda = state["hdb_max_lambda"][np.maximum(labels, 0)]
    strength = np.minimum(lam, max_lambda) / max_lambda
    return labels, np.where(labels >= 0, strength, np.nan)


_PREDICT = dict(
    centroids=_predict_centroids,
    model=_predict_model,
    core_samples=_predict_core_samples,
    hdbscan=_predict_hdbscan,
)


def pack(state):
    """A state as one string: base64 of a compressed ``.npz`` whose
    ``__meta__`` entry holds the JSON scalars."""
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    meta = {k: v for k, v in state.items() if k not in arrays}
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8),
        **arrays,
    )
    return base64.b64encode(buf.getvalue()).decode("ascii")


def unpack(text):
    """The state a :func:`pack` string holds."""
    with np.load(io.BytesIO(base64.b64decode(text))) as npz:
        state = {k: npz[k] for k in npz.files if k != "__meta__"}
        state.update(json.loads(npz["__meta__"].tobytes().decode()))
    return state


def input_dim(state):
    """The embedding dimension the run was fitted on (``None`` if the
    state cannot tell)."""
    return state.get("input_dim")
