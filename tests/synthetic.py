"""Synthetic data shared by the test folders (made importable by
``tests/conftest.py``)."""

import numpy as np


def knn_accuracy(Y, labels, k=10):
    """Mean fraction of each point's k nearest neighbours in ``Y`` that
    share its label."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(Y)
    _, idx = nn.kneighbors(Y)
    labels = np.asarray(labels)
    return float((labels[idx[:, 1:]] == labels[:, None]).mean())


def blobs(n, k=5, d=32, seed=0, scale=8.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * scale
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(size=(n, d))
    return X.astype(np.float32), y
