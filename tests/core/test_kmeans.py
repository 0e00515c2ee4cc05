"""k-means restarts: the default no longer depends on the luck of one
seed."""

import numpy as np
from sklearn.metrics import adjusted_rand_score


def mixture(n=20000, d=64, k=30, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)).astype(np.float32) * 0.115
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(size=(n, d)).astype(np.float32) * 0.1
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def test_restarts_keep_the_best_and_lift_the_worst_seed(core_package):
    km = core_package.kmeans
    X, y = mixture()
    one, best = [], []
    for seed in (51, 52, 53, 54):
        _, l1, i1 = km.kmeans(X, 30, 25, seed, n_init=1)
        _, l3, i3 = km.kmeans(X, 30, 25, seed, n_init=3)
        # the first restart is the single run: the winner fits no worse
        assert i3 <= i1 * 1.001
        one.append(adjusted_rand_score(y, l1))
        best.append(adjusted_rand_score(y, l3))
    assert np.mean(best) > np.mean(one) + 0.005


def test_the_method_restarts_by_default(core_package):
    methods = core_package.methods
    assert methods.METHODS.resolve("kmeans", {})["n_init"] == 3
