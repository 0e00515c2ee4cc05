"""Comparing two clustering runs over the samples they share: agreement
(ARI, AMI), each cluster's best match, and what became of it (kept,
split, merged, new, gone)."""

import logging
import time

import numpy as np
from fiftyone import ViewField as F

from .. import runs
from ..core.compare import compare as compare_labels
from ..core.progress import report
from ..data import InputError

__all__ = ["compare_clustering_runs", "moved_out", "moved_samples"]

logger = logging.getLogger(__name__)

# The largest number of flows returned (the largest ones)
MAX_FLOWS = 500


def compare_clustering_runs(samples, run_key, other_run_key, progress=None):
    """Compares two clustering runs on the samples of ``samples`` that
    both clustered. Writes nothing.

    Args:
        samples: a dataset or view
        run_key: the first run (e.g. the older one)
        other_run_key: the second run
        progress (None): an optional ``progress(fraction, stage)``

    Returns:
        a dict: ``summary`` (readable lines), ``ari`` and ``ami`` (the
        adjusted Rand index and adjusted mutual information, 1 for
        identical clusterings, about 0 for unrelated ones; noise counts as
        one cluster), ``n_samples`` (shared), ``clusters`` (one row per
        cluster of either run: ``run`` (``"a"`` is ``run_key``), ``id``,
        ``size``, ``best_match`` in the other run, their ``jaccard`` and
        the ``verdict``), ``events`` (each verdict with the clusters of
        both runs it names) and ``flows`` (samples per pair of clusters,
        largest first, at most :data:`MAX_FLOWS`)

    Raises:
        InputError: no such run, the same run twice, or no sample that
            both runs clustered
    """
    start = time.perf_counter()
    if run_key == other_run_key:
        raise InputError(
            f"Choose two different runs to compare; got '{run_key}' twice"
        )
    fa = runs.cluster_field(samples, run_key)
    fb = runs.cluster_field(samples, other_run_key)
    report(progress, 0.0, "reading")
    a, b = _read_pairs(samples, fa, fb)
    if len(a) == 0:
        raise InputError(
            f"Runs '{run_key}' and '{other_run_key}' have no sample in "
            "common in this view: compare runs over overlapping samples"
        )
    report(progress, 0.5, "comparing")
    out = compare_labels(a, b)
    out["flows"] = out["flows"][:MAX_FLOWS]
    out.update(
        run_key=run_key,
        other_run_key=other_run_key,
        cluster_field=fa,
        other_cluster_field=fb,
        summary=_summary(out, run_key, other_run_key),
        elapsed_s=round(time.perf_counter() - start, 2),
    )
    report(progress, 1.0, "done")
    return out


def _read_pairs(samples, fa, fb):
    """The two cluster ids of every sample that has both, in one pass."""
    schema = samples._dataset.get_field_schema()
    da = schema[fa].db_field or fa
    db = schema[fb].db_field or fb
    cursor = samples._aggregate(
        pipeline=[
            {"$match": {da: {"$ne": None}, db: {"$ne": None}}},
            {"$project": {"_id": 0, "a": "$" + da, "b": "$" + db}},
        ]
    )
    a, b = [], []
    for doc in cursor:
        a.append(doc["a"])
        b.append(doc["b"])
    return np.array(a, dtype=str), np.array(b, dtype=str)


def _summary(out, run_key, other_run_key):
    counts = {}
    for e in out["events"]:
        counts[e["verdict"]] = counts.get(e["verdict"], 0) + 1
    lines = [
        f"'{run_key}' vs '{other_run_key}' on {out['n_samples']:,} shared "
        f"samples: ARI {out['ari']:.3f}, AMI {out['ami']:.3f} (1: the same "
        "clustering, 0: no more alike than chance)",
        "verdicts: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
    ]
    for e in out["events"]:
        if e["verdict"] == "merged":
            lines.append(
                f"clusters {', '.join(e['a'])} of '{run_key}' merged into "
                f"{e['b'][0]} of '{other_run_key}'"
            )
        elif e["verdict"] == "split":
            lines.append(
                f"cluster {e['a'][0]} of '{run_key}' split into "
                f"{', '.join(e['b'])} of '{other_run_key}'"
            )
    return lines


def moved_samples(samples, run_key, other_run_key, cluster_id, other_id):
    """The samples in cluster ``cluster_id`` of ``run_key`` and
    ``other_id`` of ``other_run_key`` (one flow of a comparison)."""
    fa = runs.cluster_field(samples, run_key)
    fb = runs.cluster_field(samples, other_run_key)
    return samples.match((F(fa) == str(cluster_id)) & (F(fb) == str(other_id)))


def moved_out(samples, run_key, other_run_key, cluster_id, best_match):
    """The samples of cluster ``cluster_id`` of ``run_key`` that are not in
    its best match ``best_match`` of ``other_run_key`` (but clustered
    there): what moved elsewhere between the runs. Swap the runs for the
    samples a cluster of the second run gathered from elsewhere."""
    fa = runs.cluster_field(samples, run_key)
    fb = runs.cluster_field(samples, other_run_key)
    return samples.match(
        (F(fa) == str(cluster_id))
        & (F(fb) != None)  # noqa: E711 (clustered by both)
        & (F(fb) != str(best_match))
    )
