"""Quality of the label audit and the outlier scores on real images (the
sklearn digits), with fixed seeds, against the simple baselines a curator
would otherwise use: a plain vote of the 20 nearest neighbours, scikit-
learn's LocalOutlierFactor and IsolationForest on the same vectors."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.preprocessing import StandardScaler, normalize

SEEDS = (51, 52, 53)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data.astype(np.float32), d.target


def _space(core, X, seed=0):
    """What the API computes for a run that L2-normalises: the features,
    their 20-neighbour graph (plus self) and k-means clusters."""
    Fe = core.neighbors.prepare_features(X, "cosine", n_components=64)
    knn = core.neighbors.knn_graph(Fe, 21)
    clusters = KMeans(10, n_init=3, random_state=seed).fit_predict(Fe)
    return knn, clusters


def _plain_vote(V, labels):
    """1 - the share of the 20 nearest neighbours that share the label."""
    nn = NearestNeighbors(n_neighbors=21).fit(V)
    I = nn.kneighbors(V, return_distance=False)[:, 1:]
    return 1.0 - (labels[I] == labels[:, None]).mean(axis=1)


def _found(scores, flipped):
    """The share of flipped samples among the top-m by score."""
    top = np.argsort(-scores, kind="stable")[: flipped.sum()]
    return flipped[top].mean()


def _flip_uniform(y, rate, seed):
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), int(rate * len(y)), replace=False)
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, 10, len(idx))) % 10
    return noisy


@pytest.fixture(scope="module")
def standardised(digits, core_package):
    X, y = digits
    Z = StandardScaler().fit_transform(X).astype(np.float32)
    return Z, y, _space(core_package, Z)


@pytest.mark.parametrize("seed", SEEDS)
def test_uniform_noise_at_least_the_plain_vote(
    core_package, standardised, seed
):
    Z, y, (knn, clusters) = standardised
    noisy = _flip_uniform(y, 0.05, seed)
    flipped = noisy != y
    audit = core_package.label_audit.TrustVote().fit(knn, noisy, clusters)
    ours = _found(audit.suspicion_, flipped)
    plain = _found(_plain_vote(normalize(Z), noisy), flipped)
    assert ours >= plain, (ours, plain)
    assert ours >= 0.93


def test_auroc_with_a_fifth_of_labels_flipped(core_package, standardised):
    Z, y, (knn, clusters) = standardised
    for seed in SEEDS:
        noisy = _flip_uniform(y, 0.2, seed)
        audit = core_package.label_audit.TrustVote().fit(knn, noisy, clusters)
        assert roc_auc_score(noisy != y, audit.suspicion_) >= 0.99


@pytest.mark.parametrize("true,given", [(3, 8), (4, 9), (7, 1), (9, 5)])
def test_systematic_noise_beats_the_plain_vote(
    core_package, standardised, true, given
):
    """30% of one digit labelled as a similar one, as annotators do: the
    wrong labels vote for each other, and only the trust weighting sees
    through it."""
    Z, y, (knn, clusters) = standardised
    rng = np.random.default_rng(51)
    of_true = np.flatnonzero(y == true)
    idx = rng.choice(of_true, int(0.3 * len(of_true)), replace=False)
    noisy = y.copy()
    noisy[idx] = given
    flipped = noisy != y
    audit = core_package.label_audit.TrustVote().fit(knn, noisy, clusters)
    ours = _found(audit.suspicion_, flipped)
    plain = _found(_plain_vote(normalize(Z), noisy), flipped)
    assert ours >= plain + 0.2 and ours >= 0.7, (ours, plain)
    # the suggestion names the true digit for most of the found ones
    top = np.argsort(-audit.suspicion_)[: flipped.sum()]
    hits = top[flipped[top]]
    assert (audit.suggestion_[hits] == y[hits]).mean() >= 0.8


def test_clean_labels_give_few_suspects(core_package, standardised):
    Z, y, (knn, clusters) = standardised
    audit = core_package.label_audit.TrustVote().fit(knn, y, clusters)
    assert (audit.suspicion_ >= 0.8).mean() < 0.03


def test_unlabelled_samples_get_no_suspicion_and_no_vote(
    core_package, standardised
):
    Z, y, (knn, clusters) = standardised
    labels = y.copy()
    labels[:100] = -1
    audit = core_package.label_audit.TrustVote().fit(knn, labels, clusters)
    assert np.isnan(audit.suspicion_[:100]).all()
    assert not np.isnan(audit.suspicion_[100:]).any()
    assert (audit.suggestion_[:100] >= 0).all()  # still suggested


def test_cluster_statistics(core_package):
    labels = np.array([0, 0, 1, 1, 1, -1])
    clusters = np.array([0, 0, 0, 1, 1, 1])
    stats = core_package.label_audit.cluster_label_stats(
        labels, clusters, ["cat", "dog"], np.array([0, 0, 1, 0, 0, 0], bool)
    )
    assert stats[0]["majority_label"] == "cat"
    assert stats[0]["purity"] == pytest.approx(2 / 3)
    assert stats[0]["counts"] == {"cat": 2, "dog": 1}
    assert stats[0]["suspects"] == 1
    assert stats[1] == dict(
        majority_label="dog",
        purity=1.0,
        entropy=0.0,
        counts={"dog": 2},
        labelled=2,
        suspects=0,
    )


def _corrupt(raw, seed):
    """2% of the digits buried under heavy pixel noise, each differently,
    on the pixels that digits use.

    (Inverting digits, or noise on the pixels that are blank in every
    digit, gives the planted images the same huge values after per-pixel
    standardisation, so they cluster together and are no longer outliers;
    independent noise where digits vary keeps each one alone.)"""
    rng = np.random.default_rng(seed)
    n = len(raw)
    idx = rng.choice(n, int(0.02 * n), replace=False)
    used = raw.std(axis=0) > 2.0
    X = raw.copy()
    noise = rng.normal(0, 6, (len(idx), 64)) * used
    X[idx] = np.clip(X[idx] + noise, 0, 16)
    planted = np.zeros(n, dtype=bool)
    planted[idx] = True
    return StandardScaler().fit_transform(X).astype(np.float32), planted


@pytest.mark.parametrize("seed", SEEDS)
def test_outliers_at_least_lof_and_isolation_forest(
    core_package, digits, seed
):
    X, _ = digits
    Z, planted = _corrupt(X, seed)
    # the planted images really are far from the rest, and not a group
    knn, _ = _space(core_package, Z)
    near_planted = planted[knn[0][planted][:, 1:6]].mean()
    assert near_planted < 0.2, near_planted
    ours = core_package.outliers.RelativeDistance().fit(knn).scores_
    V = normalize(Z)  # the vectors the run clusters
    lof = -LocalOutlierFactor(20).fit(V).negative_outlier_factor_
    iso = -IsolationForest(random_state=0).fit(V).score_samples(V)
    auc = {
        name: roc_auc_score(planted, s)
        for name, s in dict(ours=ours, lof=lof, iso=iso).items()
    }
    assert auc["ours"] >= max(auc["lof"], auc["iso"]), auc


def test_outlier_scores_are_relative_to_the_typical_sample(core_package):
    rng = np.random.default_rng(0)
    F = rng.normal(size=(500, 8)).astype(np.float32)
    F[0] += 30
    knn = core_package.neighbors.knn_graph(F, 11)
    for name in core_package.outliers.OUTLIER_SCORES.names():
        cls = core_package.outliers.OUTLIER_SCORES.get(name)
        scores = cls(n_neighbors=10).fit(knn).scores_
        assert scores.argmax() == 0
        assert 0.8 < np.median(scores) < 1.2
    top = core_package.outliers.top_n(np.array([0.5, np.nan, 3.0, 2.0]), 3)
    assert top.tolist() == [2, 3, 0]


def test_the_inverted_file_search_finds_the_exact_neighbours(core_package):
    """What the actions search above a few thousand samples: nearly the
    exact neighbours, each row itself first, distances ascending."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(30, 32)) * 3
    F = centers[rng.integers(0, 30, 20000)] + rng.normal(size=(20000, 32))
    F = F.astype(np.float32)
    nb = core_package.neighbors
    I, D = nb.knn_graph(F, 11, exact=False, approximate="ivf")
    exact = nb.knn_graph(F, 11, exact=True)[0][:500]
    recall = np.mean([len(set(a) & set(b)) / 11 for a, b in zip(I, exact)])
    assert recall >= 0.95, recall
    assert (I[:, 0] == np.arange(len(F))).all()
    assert (np.diff(D, axis=1) >= -1e-6).all()
