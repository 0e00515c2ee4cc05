"""The automatic choice of the number of clusters, for every method that
declares a ``k_param``."""

import numpy as np

from .methods import METHODS
from .schema import ParamError


def choose_k(method_name, params, X, sample_size=4000, seed=51):
    """Picks the number of clusters by silhouette on a subsample.

    Fits the method for every k in ``k_min..k_max`` on a random subsample
    of at most ``sample_size`` rows and keeps the k whose silhouette score is
    highest.

    Returns:
        ``(k, curve)`` where ``curve`` is a list of ``[k, silhouette]``
    """
    from sklearn.metrics import silhouette_score

    cls = METHODS.get(method_name)
    p = METHODS.resolve(method_name, params)
    n = len(X)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, min(n, sample_size), replace=False))
    S = X[idx]
    k_min, k_max = p["k_min"], min(p["k_max"], len(S) - 1)
    if k_min > k_max:
        raise ParamError(
            f"{method_name}__k_min={p['k_min']} must not exceed "
            f"{method_name}__k_max={p['k_max']} (and fewer than the "
            f"{len(S)} samples)"
        )
    curve = []
    for k in range(k_min, k_max + 1):
        labels = cls(**{**p, cls.k_param: k}).fit(S).labels_
        if len(np.unique(labels)) < 2:
            continue
        curve.append([k, float(silhouette_score(S, labels))])
    if not curve:
        raise ParamError(
            f"Could not choose k for '{method_name}': every k in "
            f"{k_min}..{k_max} gave a single cluster"
        )
    best = max(curve, key=lambda kv: kv[1])[0]
    return best, curve
