"""Clustering runs: compute, inspect, rename and delete them.

A run goes through named stages: a :class:`ClusteringPlan` is built and
validated before any I/O; then the embeddings are (optionally) computed and
read, preprocessed, clustered and summarised; last, the fields and the run
are stored together, or not at all.
"""

import logging

import numpy as np

import fiftyone as fo

from .. import claims, runs
from ..core import methods
from ..core.auto_k import choose_k
from ..core import reduce as reduce_
from ..core.metrics import NOISE, NOISE_ID
from ..core.progress import Stages
from ..core.report import run_summary
from ..core.projection import PROJECTIONS
from ..core.summary import summarize
from ..data import (
    InputError,
    Rollback,
    read_vectors,
    remove_fields,
    write_fields,
)
from ._cluster_plan import (
    ClusteringPlan,
    check_names,
    default_reduce,
    plan_clustering,
)
from . import _keep
from .embeddings import compute_embeddings
from .label_audit import audit_summary
from .outliers import outlier_summary
from .subsets import subset_summary
from .projections import save_projection

__all__ = [
    "ClusteringPlan",
    "compute_clusters",
    "default_reduce",
    "delete_clustering_run",
    "get_clustering_run_info",
    "list_clustering_runs",
    "load_clustering_results",
    "plan_clustering",
    "rename_clustering_run",
    "repair_interrupted_runs",
]

logger = logging.getLogger(__name__)

# Readable lines about each curation action stored with a run
_ACTION_SUMMARIES = dict(
    audit_labels=audit_summary,
    compute_outliers=outlier_summary,
    select_subset=subset_summary,
)


def compute_clusters(
    samples,
    run_key,
    embeddings_field,
    method="hdbscan",
    cluster_field=None,
    normalize=True,
    reduce="auto",
    skip_missing=False,
    model=None,
    batch_size=None,
    num_workers=None,
    device="auto",
    precision="auto",
    projection_brain_key=None,
    stability_resamples=0,
    progress=None,
    **params,
):
    """Clusters the embeddings of a collection as a named run.

    Writes the cluster id of every sample (``"0"``, ``"1"``, ..., noise
    ``"-1"``) into ``cluster_field`` and a per-sample score into
    ``<run_key>_<score kind>``: the kind the method declares
    (``core.methods.SCORE_KINDS``): ``distance`` to the cluster centre
    (smaller is more typical), or the membership ``strength`` (HDBSCAN) or
    ``probability`` (Gaussian mixture) (larger is more typical). Stores the
    config and results as a run. Nothing is written unless the whole
    computation succeeds.

    Args:
        samples: a FiftyOne dataset or view
        run_key: a new run key (a Python identifier)
        embeddings_field: the vector field to cluster
        method ("hdbscan"): a clustering method; see
            :data:`core.methods.METHODS`
        cluster_field (None): the field for cluster ids; default
            ``<run_key>_cluster``
        normalize (True): whether to L2-normalise the embeddings first
        reduce ("auto"): ``"none"``, ``"pca"``, ``"umap"`` or ``"auto"``
            (UMAP to 5 dimensions for density-based methods, else none)
        skip_missing (False): whether to cluster only the samples that have
            an embedding, instead of failing when some have none
        model (None): an embedder (see :func:`compute_embeddings`) that
            first computes ``embeddings_field`` for the samples that have no
            vector yet; when every sample has one, no model is loaded. The
            embeddings are kept even if the clustering then fails
        batch_size (None): with ``model``, images per batch (see
            :func:`compute_embeddings`)
        num_workers (None): with ``model``, the processes that decode
            images
        device ("auto"): with ``model``, the device it runs on
        precision ("auto"): with ``model``, the floating-point type it runs
            in
        projection_brain_key (None): also store a 2-D UMAP projection of
            the clustered samples under this brain key for the App's
            Embeddings panel (see :func:`compute_projection`), linked to the
            run. When the run reduces with UMAP, the projection reuses its
            neighbour-search features and, where it covers every sample, its
            kNN graph
        stability_resamples (0): if positive, repeat the clustering this
            many times on random halves of the run's (already reduced)
            features, each with another seed, and store each cluster's
            mean best-match Jaccard (Hennig's cluster-wise stability, as in
            R's ``fpc::clusterboot``): above 0.85 "stable", below 0.6
            "dissolving". Costs about ``stability_resamples`` fits on half
            the samples (the reduction is not repeated)
        progress (None): an optional ``progress(fraction, stage)`` callable
        **params: method, reduction and embedder parameters as
            ``<method>__<param>``, ``<reduce>__<param>`` and
            ``<model>__<param>`` (e.g. ``kmeans__n_clusters=10``,
            ``umap__n_components=5``, ``open_clip__arch="ViT-B-32"``)

    Returns:
        a dict: ``summary`` (readable lines, as
        :func:`get_clustering_run_info` gives them), run key, method,
        fields, number of samples and clusters, cluster sizes, metrics, the
        k curve, the embeddings computed (with ``model``), timings, and
        ``repaired``: what was done to runs of this dataset that a killed
        process had left half-written (see :mod:`..claims`)
    """
    repaired = claims.repair_dead_claims(samples._dataset)
    plan = plan_clustering(
        samples,
        run_key,
        embeddings_field,
        method=method,
        cluster_field=cluster_field,
        normalize=normalize,
        reduce=reduce,
        skip_missing=skip_missing,
        model=model,
        embed_options=dict(
            batch_size=batch_size,
            num_workers=num_workers,
            device=device,
            precision=precision,
        ),
        projection_brain_key=projection_brain_key,
        stability_resamples=stability_resamples,
        **params,
    )
    with claims.claim(samples, plan.run_key, plan.fields) as claim:
        # again under the claim: a call that held these names may have
        # finished between the plan and the claim
        check_names(samples, plan)
        out = _run(samples, plan, claim, progress)
    return dict(out, repaired=repaired + claim.repaired)


def _run(samples, plan, claim, progress=None):
    """Runs a :class:`ClusteringPlan` through its stages: embed (with a
    model), read, reduce, cluster, summarise, project (with a brain key)
    and write, under the ``claim`` of its run key and fields; returns what
    :func:`compute_clusters` returns."""
    stages = Stages(progress, plan.weights())
    embedded = None
    if plan.model is not None:
        with stages("embedding", "embed") as report:
            embedded = compute_embeddings(
                samples,
                plan.embeddings_field,
                model=plan.model,
                progress=report,
                **plan.embed_options,
            )
    with stages("reading", "read") as report:
        ids, X = read_vectors(
            samples, plan.embeddings_field, plan.skip_missing, report
        )
    projector = None
    if plan.projection_brain_key is not None:
        projector = PROJECTIONS.get("umap")()
    with stages("reducing", "reduce") as report:
        Z, reducer = reduce_.preprocess(
            X,
            plan.normalize,
            plan.reduce,
            plan.reduce_params,
            progress=report,
            knn_neighbors=projector and projector.params_["n_neighbors"],
        )
    with stages("clustering", "cluster"):
        fitted, method_params, k_curve = _fit(plan, Z)
        kept = _keep.assign_model(plan, fitted, Z, reducer, X)
    stability = None
    if plan.stability_resamples:
        with stages("stability", "stability") as report:
            stability = _keep.cluster_stability(
                plan, method_params, Z, fitted.labels_, report
            )
    with stages("summarizing", "summarize"):
        summary = summarize(X, Z, fitted.labels_, fitted)
    points = None
    if projector is not None:
        with stages("projecting", "project") as report:
            points = projector.fit_transform(
                X, progress=report, graph=reducer and reducer.graph_
            )
    del Z
    with stages("writing", "write") as report, Rollback() as undo:
        undo.push(remove_fields, samples._dataset, plan.fields)
        claim.set_phase("writing")
        _store(samples, plan, ids, fitted.labels_, summary, report, claim)
        config = plan.config(method_params, len(ids))
        results = _results(summary, ids, k_curve)
        results["assign_model"] = kept
        if stability is not None:
            _keep.add_stability(results, *stability)
        claim.set_phase("registering")
        _register(samples, plan, config, results, ids, points, projector)
    stages.done()
    out = _report(plan, ids, summary, k_curve, embedded, stages.timings())
    return dict(summary=run_summary(config, results), **out)


def _fit(plan, Z):
    """Fits the method, choosing k first where it is automatic; returns
    ``(fitted, the parameters it used, k curve or None)``."""
    method_cls = methods.METHODS.get(plan.method)
    params = dict(plan.method_params)
    k_curve = None
    if method_cls.k_param and params[method_cls.k_param] is None:
        k, k_curve = choose_k(plan.method, params, Z)
        params[method_cls.k_param] = k
        logger.info("Chose k=%d by silhouette", k)
    fitted = method_cls(**params).fit(Z)
    used = fitted.used_params()
    if k_curve is not None:  # the bounds of the choice of k were used
        used = dict(params, **used)
    if (fitted.labels_ == NOISE).all():
        shown = ", ".join(f"{k}={v}" for k, v in used.items())
        raise InputError(
            f"Every sample is noise: {plan.method} ({shown}) found no "
            f"cluster among the {len(Z):,} samples. Lower its "
            "min_cluster_size / min_samples or raise eps, or cluster "
            "more samples; nothing was written"
        )
    return fitted, used, k_curve


def _results(summary, ids, k_curve):
    """The results stored with the run: per-cluster summaries, with
    representatives as sample ids."""
    clusters = {
        cid: dict(
            c, representatives=[str(ids[i]) for i in c["representatives"]]
        )
        for cid, c in summary["clusters"].items()
    }
    return dict(
        clusters=clusters,
        metrics=summary["metrics"],
        k_curve=k_curve,
        n_samples=len(ids),
    )


def _store(samples, plan, ids, labels, summary, progress, claim):
    """Writes the cluster ids and scores into the run's new fields."""
    scores = summary["scores"]
    score_values = np.where(np.isnan(scores), None, scores.astype(float))
    write_fields(
        samples._dataset,
        ids,
        {
            plan.cluster_field: labels.astype(str),
            plan.score_field: score_values,
        },
        {plan.cluster_field: fo.StringField, plan.score_field: fo.FloatField},
        progress=progress,
        tag=claim.token,
    )


def _register(samples, plan, config, results, ids, points, projector):
    """Registers the run (and its projection) over fields already written;
    if that fails, deletes the run again."""
    with Rollback() as undo:
        runs.register(samples, plan.run_key, config, results)
        undo.push(samples._dataset.delete_run, plan.run_key)
        if points is not None:
            save_projection(
                samples,
                plan.projection_brain_key,
                ids,
                points,
                "umap",
                projector.params_,
                plan.embeddings_field,
                run_key=plan.run_key,
            )


def _report(plan, ids, summary, k_curve, embedded, timings):
    """What :func:`compute_clusters` returns."""
    sizes = {cid: c["size"] for cid, c in summary["clusters"].items()}
    return dict(
        run_key=plan.run_key,
        method=plan.method,
        cluster_field=plan.cluster_field,
        score_field=plan.score_field,
        n_samples=len(ids),
        n_clusters=sum(1 for cid in sizes if cid != NOISE_ID),
        sizes=sizes,
        metrics=summary["metrics"],
        k_curve=k_curve,
        embeddings=embedded,
        timings=timings,
    )


def repair_interrupted_runs(samples):
    """Repairs the clustering runs of the collection's dataset that a
    killed process left half-written: stray values, fields declared with
    no run, a run registered without results. Every later call of
    :func:`compute_clusters` on the dataset does this first.

    Returns:
        one sentence per repaired run (an empty list if none needed it)
    """
    return claims.repair_dead_claims(samples._dataset)


def get_clustering_run_info(samples, run_key):
    """Config, timestamp, versions and statistics of a clustering run.

    Returns:
        a JSON-ready dict: first ``summary``, a few readable lines (method
        and the parameters it used, clusters and sizes, fields, each
        quality metric with what it means, edits by hand since, and when
        it was computed); then ``run_key``, ``timestamp`` (ISO 8601 with
        its time zone), ``fiftyone_version``, ``plugin_version``,
        ``config`` and ``statistics`` (number of samples and clusters,
        metrics, the k curve, ``edits``, and last, per cluster, sizes,
        labels and representative sample ids) and ``actions``: the config,
        summary and per-cluster results of the curation actions stored
        with the run (``audit_labels``, ``compute_outliers``)
    """
    info = runs.get_info(samples, run_key)
    results = runs.load_results(samples, run_key)
    summary = run_summary(info["config"], results, info["timestamp"])
    summary += _keep.stability_lines(results) + _keep.assignment_lines(results)
    actions = results.get("actions") or {}
    for name, record in actions.items():
        summary += _ACTION_SUMMARIES[name](record)
    info = dict(summary=summary, **info)
    info["actions"] = actions
    clusters = {
        cid: {k: v for k, v in c.items() if k != "centroid"}
        for cid, c in results.get("clusters", {}).items()
    }
    info["statistics"] = dict(
        n_samples=results.get("n_samples"),
        n_clusters=sum(1 for cid in clusters if cid != NOISE_ID),
        metrics=results.get("metrics"),
        k_curve=results.get("k_curve"),
        edits=results.get("edits") or [],
        clusters=clusters,
    )
    info["stability"] = _stability_info(results)
    info["assignments"] = results.get("assignments") or []
    return info


def _stability_info(results):
    """Per-cluster stability and how it was measured, or ``None``."""
    record = results.get("stability")
    if not record:
        return None
    clusters = {
        cid: c.get("stability")
        for cid, c in (results.get("clusters") or {}).items()
        if cid != NOISE_ID
    }
    return dict(record, clusters=clusters)


def list_clustering_runs(samples):
    """The keys of the clustering runs on a collection's dataset."""
    return runs.list_runs(samples)


def load_clustering_results(samples, run_key):
    """The stored results of a clustering run, with centroids as a float32
    matrix (rows in the order of ``cluster_ids``).

    Returns:
        a dict with ``cluster_ids``, ``centroids``, ``clusters``,
        ``metrics``, ``k_curve`` and ``n_samples``
    """
    results = runs.load_results(samples, run_key)
    clusters = results["clusters"]
    cluster_ids = [c for c in clusters if clusters[c]["centroid"] is not None]
    centroids = np.array(
        [clusters[c]["centroid"] for c in cluster_ids], dtype=np.float32
    )
    return dict(results, cluster_ids=cluster_ids, centroids=centroids)


def rename_clustering_run(samples, run_key, new_run_key):
    """Renames a clustering run (the fields it wrote keep their names)."""
    runs.rename(samples, run_key, new_run_key)


def delete_clustering_run(samples, run_key):
    """Deletes a clustering run and every sample field it wrote."""
    runs.delete(samples, run_key)
