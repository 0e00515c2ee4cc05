"""Assigning samples a clustering run did not see (new samples, another
split) to its clusters, with the small model the run stored when it was
computed (see :mod:`..core.assign`). Existing cluster ids never change."""

import datetime
import logging
import time

import numpy as np

import fiftyone as fo

from .. import claims, runs
from ..core import assign as assign_
from ..core.metrics import NOISE_ID
from ..core.progress import report, span
from ..data import (
    InputError,
    Rollback,
    check_sample_collection,
    drop_temporaries,
    fill_values,
    read_vectors,
    remove_fields,
    unset_values,
)

__all__ = ["assign_clusters", "assigned_view"]

logger = logging.getLogger(__name__)


def novel_field(run_key):
    """The run-owned field that flags assigned samples as novel."""
    return f"{run_key}_novel"


def assign_clusters(
    samples,
    run_key,
    novelty_factor=1.3,
    recluster_above=None,
    recluster_run_key=None,
    progress=None,
):
    """Assigns the samples of ``samples`` that run ``run_key`` did not see
    (those with no value in its cluster field) to its clusters.

    Each sample goes through the run's own preprocessing (normalisation,
    PCA, its place in the UMAP layout) and the method's stored model (see
    :mod:`..core.assign`); clusters merged by hand since receive the
    samples of the clusters they absorbed. Writes, for the new samples
    only: their cluster id into the run's cluster field, their score into
    its score field, and ``<run_key>_novel`` (owned by the run): ``True``
    for samples farther from their nearest cluster than 99% of its own
    members and then some (``novelty_factor``), which get the noise id
    ``"-1"``. Existing ids never
    change; the values are written in one merge under a claim of the run,
    and removed again if anything fails. The run's results record the
    call (``assignments``) and each cluster's ``assigned`` count.

    Args:
        samples: a dataset or view holding the new samples
        run_key: a clustering run computed with this version or later
        novelty_factor (1.3): a sample is novel when its distance to its
            nearest cluster's centre exceeds that cluster's median member
            distance by more than this many times (99th percentile -
            median); larger flags fewer
        recluster_above (None): a share in (0, 1]: if more of the new
            samples than this are novel, nothing is assigned and the
            clustering is instead computed again on the whole view, with
            the run's settings, as a new run ``recluster_run_key``
        recluster_run_key (None): the new run's key; default
            ``<run_key>_reclustered``
        progress (None): an optional ``progress(fraction, stage)``

    Returns:
        a dict: ``summary`` (readable lines), ``n_assigned``, ``n_novel``,
        ``sizes`` (new samples per cluster), the fields written, and
        ``reclustered`` (the new run's summary, or ``None``)

    Raises:
        InputError: before anything is written: no such run, a run
            computed before this feature, no new sample in the view,
            samples without embeddings or with another dimension, a bad
            option
    """
    start = time.perf_counter()
    check_sample_collection(samples, "assign_clusters writes sample fields")
    _check_options(novelty_factor, recluster_above)
    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    state = _state(results, run_key)
    field = runs.cluster_field(samples, run_key, config)
    new = samples.exists(field, False)
    n_new = new.count()
    if n_new == 0:
        raise InputError(
            f"This view holds no sample that run '{run_key}' has not seen: "
            f"every sample has a value in '{field}'. Add samples, or pick a "
            "view with new ones"
        )
    report(progress, 0.0, "reading")
    ids, X = read_vectors(
        new, config["embeddings_field"], progress=span(progress, 0.0, 0.4)
    )
    _check_dim(state, X, config["embeddings_field"], run_key)
    report(progress, 0.4, "assigning")
    labels, scores, novel = assign_.assign(state, X, novelty_factor)
    del X
    share = float(novel.mean())
    if recluster_above is not None and share > recluster_above:
        return _recluster(
            samples, run_key, config, results, share, recluster_run_key
        )
    ids_str = _current_ids(labels, results)
    report(progress, 0.7, "writing")
    record = _write(
        samples, run_key, config, ids, ids_str, scores, novel, novelty_factor
    )
    report(progress, 1.0, "done")
    return dict(
        run_key=run_key,
        summary=_summary(record, run_key, field),
        n_assigned=record["n_assigned"],
        n_novel=record["n_novel"],
        sizes=record["sizes"],
        fields=[field, config.get("score_field"), novel_field(run_key)],
        novel_field=novel_field(run_key),
        reclustered=None,
        elapsed_s=round(time.perf_counter() - start, 2),
    )


def assigned_view(samples, run_key, cluster_id=None, novel=False):
    """The samples that :func:`assign_clusters` put into run ``run_key``
    (those with a value in ``<run_key>_novel``), of one cluster or of all,
    or only the novel ones (``novel=True``).

    Raises:
        InputError: no such run, or a cluster the run does not have
    """
    from fiftyone import ViewField as F

    field = runs.cluster_field(samples, run_key)
    flag = novel_field(run_key)
    if flag not in samples._dataset.get_field_schema():
        return samples.match(F("_id") == None)  # noqa: E711 (none)
    view = samples.match(F(flag) == True) if novel else samples.exists(flag)
    if cluster_id is not None:
        clusters = runs.load_results(samples, run_key).get("clusters") or {}
        if str(cluster_id) not in clusters:
            raise InputError(f"Run '{run_key}' has no cluster {cluster_id!r}")
        view = view.match(F(field) == str(cluster_id))
    return view


def assigned_counts(samples, run_key, results):
    """``{"assigned": n, "novel": m}`` samples of ``samples`` assigned to
    the run later, counted now; empty when none ever was."""
    if not results.get("assignments"):
        return {}
    n = assigned_view(samples, run_key).count()
    return (
        dict(
            assigned=n,
            novel=assigned_view(samples, run_key, None, True).count(),
        )
        if n
        else {}
    )


def _check_options(novelty_factor, recluster_above):
    if isinstance(novelty_factor, bool) or not isinstance(
        novelty_factor, (int, float)
    ):
        raise InputError(
            f"novelty_factor must be a number; got {novelty_factor!r}"
        )
    if not novelty_factor > 0:
        raise InputError(f"novelty_factor must be > 0; got {novelty_factor}")
    if recluster_above is not None and (
        isinstance(recluster_above, bool)
        or not isinstance(recluster_above, (int, float))
        or not 0 < recluster_above <= 1
    ):
        raise InputError(
            "recluster_above must be a share in (0, 1] or None; got "
            f"{recluster_above!r}"
        )


def _state(results, run_key):
    text = results.get("assign_model")
    if not text:
        raise InputError(
            f"Run '{run_key}' was computed before assign_clusters existed "
            "and stores no model to assign new samples with: recompute it "
            "(compute_clusters with the same settings under a new key, or "
            "delete it and compute it again)"
        )
    state = assign_.unpack(text)
    if state.get("version") != assign_.VERSION:
        raise InputError(
            f"Run '{run_key}' stores an assignment model of another "
            f"version ({state.get('version')}): recompute the run"
        )
    return state


def _check_dim(state, X, field, run_key):
    dim = state.get("input_dim")
    if dim is not None and X.shape[1] != dim:
        raise InputError(
            f"The new samples' '{field}' vectors have {X.shape[1]} "
            f"dimensions; run '{run_key}' was computed on {dim}. Compute "
            "their embeddings with the run's model"
        )


def _current_ids(labels, results):
    """The run's current cluster ids of fitted labels: a cluster merged
    into another by hand is that other one."""
    clusters = results.get("clusters") or {}
    where = {cid: cid for cid in clusters}
    for cid, c in clusters.items():
        for source in c.get("merged_from") or []:
            where[str(source)] = cid
    values, inverse = np.unique(labels, return_inverse=True)
    mapped = np.array(
        [where.get(str(v), NOISE_ID) for v in values.tolist()], dtype=object
    )
    return mapped[inverse]


def _write(samples, run_key, config, ids, cluster_ids, scores, novel, factor):
    """Writes the new samples' values and the run's record of the call,
    under a claim of the run; all or nothing."""
    dataset = samples._dataset
    field = config["cluster_field"]
    score_field = config.get("score_field")
    flag = novel_field(run_key)
    fields = [flag] if flag not in dataset.get_field_schema() else []
    values = {
        field: cluster_ids,
        flag: novel.tolist(),
    }
    types = {field: fo.StringField, flag: fo.BooleanField}
    if score_field:
        values[score_field] = [
            None if np.isnan(s) else float(s) for s in scores.tolist()
        ]
        types[score_field] = fo.FloatField
    with claims.claim(samples, None, fields, edits=run_key) as claim:
        taken = _already_assigned(dataset, ids, field)
        if taken:
            raise InputError(
                f"{taken} of these samples were assigned to run "
                f"'{run_key}' by another call meanwhile; run it again"
            )
        # a repair unsets these values on the samples of the write's
        # temporary collection, kept until the record is saved
        claim.set_phase("writing", values=list(values))
        with Rollback() as undo:
            undo.push(drop_temporaries, dataset, claim.token)
            fill_values(dataset, ids, values, types, claim.token, keep=True)
            undo.push(_undo_values, dataset, ids, list(values), fields)
            record = _record(cluster_ids, novel, factor)
            claim.set_phase("committing", values=list(values))
            _save_record(samples, run_key, flag, record, claim.token)
        claim.set_phase("done")
        drop_temporaries(dataset, claim.token)
    return record


def _already_assigned(dataset, ids, field, chunk=100_000):
    """How many of the samples ``ids`` have a value in ``field`` (in
    chunks: one query naming a million ids exceeds MongoDB's 16 MB)."""
    coll = dataset._sample_collection
    return sum(
        coll.count_documents(
            {"_id": {"$in": list(ids[s : s + chunk])}, field: {"$ne": None}}
        )
        for s in range(0, len(ids), chunk)
    )


def _undo_values(dataset, ids, names, declared):
    unset_values(dataset, ids, names)
    remove_fields(dataset, declared)


def _record(cluster_ids, novel, factor):
    values, counts = np.unique(cluster_ids.astype(str), return_counts=True)
    return dict(
        timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        n_assigned=int(len(cluster_ids)),
        n_novel=int(novel.sum()),
        novelty_factor=float(factor),
        sizes={str(v): int(c) for v, c in zip(values, counts)},
    )


def _save_record(samples, run_key, flag, record, token):
    config = runs.get_config(samples, run_key)
    fields = list(config.get("fields", []))
    if flag not in fields:
        runs.update_config(samples, run_key, fields=fields + [flag])
    results = runs.load_results(samples, run_key)
    results.setdefault("assignments", []).append(record)
    clusters = results.get("clusters") or {}
    for cid, count in record["sizes"].items():
        if cid not in clusters:  # noise where the run had none
            clusters[cid] = dict(
                size=0, centroid=None, representatives=[], score_mean=None
            )
        clusters[cid]["assigned"] = clusters[cid].get("assigned", 0) + count
    runs.save_results(samples, run_key, results, token)


def _summary(record, run_key, field):
    n = record["n_assigned"]
    top = sorted(record["sizes"].items(), key=lambda kv: -kv[1])[:10]
    return [
        f"Assigned {n:,} new samples to run '{run_key}' (ids in '{field}'; "
        "existing ids unchanged)",
        f"{record['n_novel']:,} novel ({record['n_novel'] / max(n, 1):.1%}),"
        f" given noise '-1' and flagged in '{novel_field(run_key)}'",
        "per cluster: " + ", ".join(f"{c}: {k:,}" for c, k in top),
    ]


def _recluster(samples, run_key, config, results, share, new_key):
    """Computes the clustering again on the whole view, as a new run."""
    from .clustering import compute_clusters

    new_key = new_key or f"{run_key}_reclustered"
    method = config["method"]
    params = {f"{method}__{k}": v for k, v in config["params"].items()}
    if results.get("k_curve"):  # k was chosen: choose it again
        params.pop(f"{method}__n_clusters", None)
    reduce_params = {
        f"{config['reduce']}__{k}": v
        for k, v in (config.get("reduce_params") or {}).items()
    }
    out = compute_clusters(
        samples,
        new_key,
        config["embeddings_field"],
        method=method,
        normalize=config.get("normalize", True),
        reduce=config.get("reduce", "auto"),
        skip_missing=config.get("skip_missing", False),
        **params,
        **reduce_params,
    )
    summary = [
        f"{share:.1%} of the new samples were novel, above the limit: "
        f"nothing was assigned to '{run_key}'; the clustering was computed "
        f"again on the whole view as run '{new_key}'"
    ] + out["summary"]
    return dict(
        run_key=run_key,
        summary=summary,
        n_assigned=0,
        n_novel=None,
        novel_share=share,
        sizes={},
        fields=[],
        reclustered=out,
    )
