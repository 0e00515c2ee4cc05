"""Outlier scores: which samples of a clustering run do not belong, from
the distances to their nearest neighbours in the run's feature space.
"""

import math

import numpy as np

import fiftyone as fo
from fiftyone import ViewField as F

from ..core.outliers import OUTLIER_SCORES, top_n
from ..core.progress import report, span
from ..core.schema import ParamError
from ..data import InputError
from ._actions import action_fields, check_action, run_neighbors, store_action

__all__ = ["compute_outliers"]

NAME = "compute_outliers"


def compute_outliers(
    samples,
    run_key,
    method="relative_distance",
    top=None,
    tag=None,
    progress=None,
    **params,
):
    """Scores how unusual each sample of a clustering run is.

    Writes ``<run_key>_outlier`` (higher is more unusual; 1 is a typical
    sample), owned by the run; stores with the run the config, the score
    of the ``top``-th sample and per cluster the number of its samples
    among the top ones and their mean score; saves the view
    ``"<run_key> outliers"`` of the top samples, most unusual first. A
    second call replaces the first one's field, view and record.

    Args:
        samples: a dataset or view (the run's samples in it are scored)
        run_key: a clustering run
        method ("relative_distance"): a score of
            :data:`core.outliers.OUTLIER_SCORES`
        top (None): how many samples the saved view (and ``tag``) holds;
            default 1% of the samples (at least 1)
        tag (None): also tag the top samples with this tag
        progress (None): an optional ``progress(fraction, stage)``
        **params: the method's parameters (e.g. ``n_neighbors=20``)

    Returns:
        a dict: ``summary`` (readable lines), the field, the saved view,
        ``cutoff`` (the lowest score in the top), ``clusters``

    Raises:
        InputError: before anything is written, for unknown parameters,
            ``top`` out of range or a run with no samples in the view
    """
    scorer = _scorer(method, params, top)
    field = action_fields(run_key, ("outlier",))["outlier"]
    view_name = f"{run_key} outliers"
    config = check_action(samples, run_key, NAME, [field], [view_name])
    ids, clusters, knn = run_neighbors(
        samples,
        run_key,
        config,
        scorer.params_["n_neighbors"],
        span(progress, 0.0, 0.7, "neighbours"),
    )
    report(progress, 0.72, "scoring")
    # rounded as stored, so that the saved view holds the top ones
    scores = np.round(scorer.fit(knn).scores_.astype(float), 6)
    del knn
    n_top = top or max(1, math.ceil(0.01 * len(ids)))
    if n_top > len(ids):
        raise InputError(
            f"top={n_top} is more than the {len(ids):,} samples of run "
            f"'{run_key}' in this view"
        )
    picked = top_n(scores, n_top)
    cutoff = float(scores[picked[-1]])
    record = dict(
        config=dict(method=method, params=dict(scorer.params_), top=n_top),
        n_samples=len(ids),
        cutoff=cutoff,
        clusters=_per_cluster(scores, clusters, picked),
    )
    view = (
        samples._dataset.match(F(field) >= cutoff)
        .sort_by(field, reverse=True)
        .limit(n_top)
    )
    record = store_action(
        samples,
        run_key,
        NAME,
        ids,
        {field: scores},
        {field: fo.FloatField},
        record,
        views={view_name: view},
        progress=span(progress, 0.75, 0.98, "writing"),
    )
    if tag:
        view.tag_samples(tag)
    report(progress, 1.0, "done")
    return dict(record, run_key=run_key, summary=outlier_summary(record))


def _scorer(method, params, top):
    """The outlier score, its parameters and ``top`` checked."""
    if top is not None and (
        isinstance(top, bool) or not isinstance(top, int) or top < 1
    ):
        raise InputError(f"top must be a positive integer, not {top!r}")
    try:
        return OUTLIER_SCORES.get(method)(**params)
    except ParamError as e:
        raise InputError(str(e)) from None


def _per_cluster(scores, clusters, picked):
    """Per cluster id: its samples among the top ones and their mean
    score."""
    top = np.zeros(len(scores), dtype=bool)
    top[picked] = True
    out = {}
    for c in np.unique(clusters):
        members = clusters == c
        out[str(int(c))] = dict(
            outliers=int((top & members).sum()),
            mean_score=float(scores[members].mean()),
        )
    return out


def outlier_summary(record):
    """Readable lines about stored outlier scores."""
    c = record["config"]
    params = ", ".join(f"{k}={v}" for k, v in c["params"].items())
    worst = sorted(
        record["clusters"].items(), key=lambda kv: -kv[1]["outliers"]
    )[:3]
    return [
        f"Outlier scores ({c['method']}, {params}) of "
        f"{record['n_samples']:,} samples: the top {c['top']:,} score "
        f"{record['cutoff']:.3g} or more (1 is typical)",
        "Most outliers in clusters: "
        + "; ".join(f"{cid} ({s['outliers']})" for cid, s in worst),
        f"Field: {record['fields'][0]}; saved view "
        f"'{record['saved_views'][0]}'",
    ]
