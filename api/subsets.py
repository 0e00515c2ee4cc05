"""Balanced subsets: ``n`` samples spread across a clustering run's
clusters, recorded with the run (what was chosen, from what, and why).
"""

import numpy as np

from .. import runs
from ..core.metrics import NOISE
from ..core.progress import report, span
from ..core.schema import ParamError
from ..core.subsets import SUBSET_ORDERS, select
from ..data import InputError, read_vectors
from ._actions import check_action, store_action

__all__ = ["select_subset"]

NAME = "select_subset"


def subset_view_name(run_key):
    return f"{run_key} subset"


def select_subset(
    samples,
    run_key,
    n,
    tag=None,
    order="spread",
    dup_key=None,
    skip_outliers=False,
    skip_noise=False,
    seed=51,
    sub_clusters=3,
    progress=None,
):
    """Picks ``n`` samples spread across the clusters of a run.

    Each cluster gets an equal share, capped by its size, the remainder
    shared again among the larger ones (see :func:`core.subsets.allocate`);
    within a cluster, members are taken in ``order``. With
    ``sub_clusters`` above 1, a cluster's share is itself shared equally
    among that many k-means parts of the cluster (see
    :func:`core.subsets.select`). Saves the view
    ``"<run_key> subset"`` and records with the run the config, per
    cluster the samples eligible and taken, and what was skipped. A second
    call replaces the first one's view and record.

    Args:
        samples: a dataset or view covered by the run
        run_key: a clustering run
        n: how many samples, at least the number of clusters and at most
            the eligible samples
        tag (None): also tag the chosen samples
        order ("spread"): ``"spread"`` (farthest points in the
            embeddings, from the most typical: covers a cluster's variety,
            minorities included), ``"typical"`` (the run's score) or
            ``"random"``
        dup_key (None): a duplicates run whose samples not kept are
            skipped
        skip_outliers (False): skip the top outliers of the run's
            ``compute_outliers``, if it has one
        skip_noise (False): skip noise samples (cluster ``-1``); kept,
            noise gets a share like a cluster (rare kinds of samples that
            a density-based method left as noise are then not lost)
        seed (51): seed of the random choices
        sub_clusters (3): above 1, split each cluster that gives some
            but not all of its samples into this many parts by k-means in
            the embeddings and share its quota equally among them, so that
            a minority group inside a cluster is not swamped (this reads
            the embeddings whatever the order); 1 gives equal shares per
            cluster only
        progress (None): an optional ``progress(fraction, stage)``

    Returns:
        a dict: ``summary`` (readable lines), the saved view, ``n``,
        ``clusters`` (per cluster: eligible, taken) and ``skipped``
    """
    if order not in SUBSET_ORDERS.names():
        raise InputError(
            f"order must be one of {', '.join(SUBSET_ORDERS.names())}, not "
            f"{order!r}"
        )
    n = _check_n(n)
    sub_clusters = _check_sub_clusters(sub_clusters)
    view_name = subset_view_name(run_key)
    config = check_action(samples, run_key, NAME, [], [view_name])
    rows = _eligible(
        samples, run_key, config, dup_key, skip_outliers, skip_noise
    )
    ids, clusters, typicality, skipped = rows
    _check_fits(n, clusters, skipped, run_key)
    features = None
    if SUBSET_ORDERS.get(order).needs_features or sub_clusters > 1:
        features = _features(samples, config, ids, span(progress, 0, 0.6))
    report(progress, 0.7, "choosing")
    try:
        chosen, per_cluster = select(
            clusters, n, order, typicality, features, seed, sub_clusters
        )
    except ParamError as e:
        raise InputError(str(e)) from None
    # string ids: a view that the App can send back
    chosen_ids = [str(ids[i]) for i in chosen]
    options = dict(
        n=n,
        order=order,
        dup_key=dup_key,
        skip_outliers=skip_outliers,
        skip_noise=skip_noise,
        seed=seed,
        sub_clusters=sub_clusters,
        tag=tag,
    )
    record = _record(options, len(ids), skipped, per_cluster)
    view = samples._dataset.select(chosen_ids)
    record = store_action(
        samples, run_key, NAME, [], None, {}, record, views={view_name: view}
    )
    if tag:
        view.tag_samples(tag)
    report(progress, 1.0, "done")
    return dict(record, run_key=run_key, summary=subset_summary(record))


def _record(options, n_eligible, skipped, per_cluster):
    return dict(
        config=options,
        n_eligible=n_eligible,
        skipped=skipped,
        clusters={str(c): _cluster_record(*v) for c, v in per_cluster.items()},
    )


def _cluster_record(eligible, taken, parts):
    out = dict(eligible=eligible, taken=taken)
    if parts:
        out["parts"] = [dict(eligible=e, taken=t) for e, t in parts]
    return out


def _check_n(n):
    if (
        isinstance(n, bool)
        or not isinstance(n, (int, float))
        or (isinstance(n, float) and not n.is_integer())
    ):
        raise InputError(f"n must be a whole number of samples, not {n!r}")
    if n < 1:
        raise InputError(f"n must be at least 1, not {n}")
    return int(n)


def _check_sub_clusters(k):
    if (
        isinstance(k, bool)
        or not isinstance(k, (int, float))
        or (isinstance(k, float) and not k.is_integer())
        or k < 1
    ):
        raise InputError(
            f"sub_clusters must be a whole number >= 1, not {k!r}"
        )
    return int(k)


# long: one read, then each reason to skip a sample, counted
def _eligible(samples, run_key, config, dup_key, skip_outliers, skip_noise):
    """The run's samples of the view that may be chosen: ``(ids,
    clusters, typicality, skipped)``."""
    field = runs.cluster_field(samples, run_key, config)
    total = samples.count()
    if samples.exists(field).count() < total:
        missing = total - samples.exists(field).count()
        raise InputError(
            f"{missing:,} of the {total:,} samples of this view are not in "
            f"run '{run_key}' (it was computed on another view); use the "
            "run's samples; nothing was written"
        )
    names = ["_id", field]
    score = config.get("score_field")
    schema = samples._dataset.get_field_schema()
    score = score if score in schema else None
    outlier, cutoff = _outlier_field(samples, run_key, schema, skip_outliers)
    keep_field = _keep_field(samples, dup_key)
    extra = [f for f in (score, outlier, keep_field) if f]
    values = samples.values(names + extra)
    ids = values[0]
    clusters = np.array([int(c) for c in values[1]], dtype=np.int64)
    col = dict(zip(extra, values[2:]))
    ok = np.ones(len(ids), dtype=bool)
    skipped = {}
    if skip_noise:
        noise = clusters == NOISE
        skipped["noise"] = int(noise.sum())
        ok &= ~noise
    if outlier:
        o = np.array([np.nan if v is None else v for v in col[outlier]])
        top = o >= cutoff
        skipped["outliers"] = int((top & ok).sum())
        ok &= ~top
    if keep_field:
        dup = np.array([v is False for v in col[keep_field]])
        skipped["duplicates_not_kept"] = int((dup & ok).sum())
        ok &= ~dup
    typicality = np.zeros(len(ids))
    if score:
        s = np.array([np.nan if v is None else v for v in col[score]])
        higher = (config.get("score_kind") or "distance") != "distance"
        typicality = np.nan_to_num(s if higher else -s, nan=-np.inf)
    where = np.flatnonzero(ok)
    return [ids[i] for i in where], clusters[where], typicality[where], skipped


def _outlier_field(samples, run_key, schema, skip):
    """The outlier field and the top's cutoff, if the run has outlier
    scores and they are skipped."""
    if not skip:
        return None, None
    record = runs.get_actions(samples, run_key).get("compute_outliers")
    field = f"{run_key}_outlier"
    if not record or field not in schema:
        return None, None
    return field, record["cutoff"]


def _keep_field(samples, dup_key):
    if not dup_key:
        return None
    config = runs.get_config(samples, dup_key, "duplicates")
    field = config["keep_field"]
    if field not in samples._dataset.get_field_schema():
        raise InputError(
            f"The field '{field}' of duplicates run '{dup_key}' is gone"
        )
    return field


def _check_fits(n, clusters, skipped, run_key):
    """Refuses ``n`` beyond the eligible samples or below the clusters."""
    why = ", ".join(
        f"{v:,} {k.replace('_', ' ')}" for k, v in skipped.items() if v
    )
    why = f" ({why} skipped)" if why else ""
    if n > len(clusters):
        raise InputError(
            f"n={n:,} is more than the {len(clusters):,} samples of run "
            f"'{run_key}' that may be chosen in this view{why}; nothing was "
            "written. Choose a smaller n, or skip less"
        )
    k = len(np.unique(clusters))
    if n < k:
        raise InputError(
            f"n={n:,} is less than the {k:,} clusters of run '{run_key}': "
            "an equal share per cluster needs at least one sample each; "
            f"nothing was written. Choose n >= {k:,}"
        )


def _features(samples, config, ids, progress):
    """Unit embeddings of the rows ``ids`` (in that order), read from the
    whole view: a selection of a million ids would be a query larger than
    the database accepts."""
    field = config["embeddings_field"]
    got, X = read_vectors(samples, field, skip_missing=True, progress=progress)
    where = {i: k for k, i in enumerate(got)}
    try:
        rows = np.fromiter((where[i] for i in ids), np.int64, len(ids))
    except KeyError as e:
        raise InputError(f"Sample {e} has no '{field}'") from None
    if len(rows) != len(X) or (rows != np.arange(len(X))).any():
        X = X[rows]
    for s in range(0, len(X), 65536):  # in place, in chunks
        part = X[s : s + 65536]
        part /= np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
    return X


def subset_summary(record):
    """Readable lines about a stored subset."""
    c = record["config"]
    clusters = record["clusters"]
    taken = sorted(clusters.items(), key=lambda kv: -kv[1]["taken"])
    capped = [
        cid for cid, s in clusters.items() if s["taken"] == s["eligible"]
    ]
    skipped = ", ".join(
        f"{v:,} {k.replace('_', ' ')}" for k, v in record["skipped"].items()
    )
    lines = [
        f"Subset of {c['n']:,} samples ({c['order']}) from "
        f"{len(clusters)} clusters: "
        + ", ".join(f"{cid}: {s['taken']}" for cid, s in taken[:8])
        + (" ..." if len(taken) > 8 else ""),
        f"Equal shares capped by cluster size; {len(capped)} clusters gave "
        f"all their {'' if not capped else 'eligible '}samples"
        + _parts_summary(clusters),
        f"Chosen from {record['n_eligible']:,} eligible samples"
        + (f"; skipped {skipped}" if skipped else ""),
        f"Saved view '{record['saved_views'][0]}'"
        + (f"; tag '{c['tag']}'" if c.get("tag") else ""),
    ]
    return lines


def _parts_summary(clusters):
    split = [s["parts"] for s in clusters.values() if s.get("parts")]
    if not split:
        return ""
    return (
        f"; {len(split)} clusters shared their quota among "
        f"{sum(len(p) for p in split)} k-means parts"
    )
