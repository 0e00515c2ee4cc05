"""What a clustering run keeps so that it can follow its dataset: the
small model that assigns new samples (:mod:`..core.assign`) and, on
request, each cluster's bootstrap stability (:func:`..core.compare.stability`).
"""

import logging
import time

import numpy as np

from ..core import assign as assign_
from ..core import methods
from ..core.compare import DISSOLVING, STABLE, stability, stability_word
from ..core.metrics import NOISE_ID

logger = logging.getLogger(__name__)

# The share of the run's samples each stability resample clusters
STABILITY_FRACTION = 0.5


def assign_model(plan, fitted, Z, reducer, X):
    """The packed assignment state of a fit (see :mod:`..core.assign`)."""
    state = assign_.fit_state(
        fitted,
        fitted.labels_,
        Z,
        plan.normalize,
        plan.reduce,
        reducer,
        X=X,
    )
    return assign_.pack(state)


def cluster_stability(plan, used_params, Z, labels, progress=None):
    """Each cluster's mean best-match Jaccard over
    ``plan.stability_resamples`` refits on random halves of the run's
    features (the reduction is not repeated), each with another seed.

    Returns:
        ``({cluster id: stability}, record)`` where the record says how it
        was measured and how long it took
    """
    n = plan.stability_resamples
    start = time.perf_counter()
    method_cls = methods.METHODS.get(plan.method)
    seeded = any(p.name == "random_state" for p in method_cls.params)
    base = {k: v for k, v in used_params.items() if k in _names(method_cls)}
    done = [0]

    def fit(rows, seed):
        params = dict(base, random_state=seed) if seeded else base
        out = method_cls(**params).fit(Z[rows]).labels_
        done[0] += 1
        if progress is not None:
            progress(done[0] / n)
        return out

    values = stability(fit, labels, n, STABILITY_FRACTION)
    record = dict(
        resamples=n,
        fraction=STABILITY_FRACTION,
        stable_above=STABLE,
        dissolving_below=DISSOLVING,
        seconds=round(time.perf_counter() - start, 2),
    )
    return {str(c): v for c, v in values.items()}, record


def _names(method_cls):
    return {p.name for p in method_cls.params}


def add_stability(results, values, record):
    """Puts per-cluster stability into a run's results."""
    for cid, c in results["clusters"].items():
        value = values.get(cid)
        c["stability"] = None if cid == NOISE_ID else value
        c["stability_verdict"] = stability_word(c["stability"])
    results["stability"] = record


def stability_lines(results):
    """Readable lines about a run's stability (none if not measured)."""
    record = results.get("stability")
    if not record:
        return []
    values = [
        c.get("stability")
        for c in (results.get("clusters") or {}).values()
        if c.get("stability") is not None
    ]
    stable = sum(v > STABLE for v in values)
    dissolving = sum(v < DISSOLVING for v in values)
    return [
        (
            f"stability ({record['resamples']} refits on random "
            f"{record['fraction']:.0%} subsets, mean best-match Jaccard): "
            f"{stable} clusters stable (> {STABLE}), {dissolving} dissolving "
            f"(< {DISSOLVING}), {len(values) - stable - dissolving} in "
            f"between; median {np.median(values):.2f}"
            if values
            else "stability: no cluster"
        )
    ]


def assignment_lines(results):
    """Readable lines about samples assigned after the run."""
    done = results.get("assignments") or []
    if not done:
        return []
    total = sum(a["n_assigned"] for a in done)
    novel = sum(a["n_novel"] for a in done)
    return [
        f"{total:,} samples assigned later in {len(done)} call"
        + ("s" if len(done) > 1 else "")
        + f" ({novel:,} novel, given noise), last {done[-1]['timestamp']}"
    ]
