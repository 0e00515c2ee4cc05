"""The plugin's public Python API over FiftyOne collections.

Each function here is what the matching operator calls, and what a notebook
user can call directly. Functions read what they need from the database in
bulk, hand numpy arrays to :mod:`.core`, and store results through
:mod:`.runs`; nothing is written before the computation has succeeded.
"""

import logging

import numpy as np

import fiftyone as fo

from . import runs
from .core import methods, schema
from .core import metrics as metrics_
from .core import reduce as reduce_
from .data import (
    InputError,
    ensure_new_field,
    read_vectors,
    remove_fields,
    write_fields,
)

logger = logging.getLogger(__name__)

STRING_NOISE = "-1"


class _Stages:
    """Maps the progress of successive stages onto one 0..1 scale."""

    def __init__(self, progress, weights):
        self.progress = progress
        self.bounds = {}
        total = float(sum(weights.values()))
        start = 0.0
        for name, w in weights.items():
            self.bounds[name] = (start, start + w / total)
            start += w / total

    def __call__(self, stage):
        lo, hi = self.bounds[stage]
        logger.info("%s...", stage.capitalize())

        def report(fraction, label=None):
            if self.progress is not None:
                self.progress(lo + (hi - lo) * fraction, label or stage)

        report(0.0)
        return report


def _default_reduce(method_cls, reduce):
    if reduce == "auto":
        return "umap" if method_cls.density_based else "none"
    if reduce != "none":
        reduce_.REDUCERS.get(reduce)
    return reduce


# compute_embeddings' defaults for the options compute_clusters passes on
_EMBED_DEFAULTS = dict(
    batch_size=None, num_workers=None, device="auto", precision="auto"
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
    progress=None,
    **params,
):
    """Clusters the embeddings of a collection as a named run.

    Writes the cluster id of every sample (``"0"``, ``"1"``, ..., noise
    ``"-1"``) into ``cluster_field`` and a per-sample score into
    ``<run_key>_distance`` (distance to the cluster centre; smaller is more
    typical) or ``<run_key>_strength`` (membership strength of density-based
    methods; larger is more typical), and stores the config and results as
    a run. Nothing is written unless the whole computation succeeds.

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
        progress (None): an optional ``progress(fraction, stage)`` callable
        **params: method, reduction and embedder parameters as
            ``<method>__<param>``, ``<reduce>__<param>`` and
            ``<model>__<param>`` (e.g. ``kmeans__n_clusters=10``,
            ``umap__n_components=5``, ``open_clip__arch="ViT-B-32"``)

    Returns:
        a summary dict: run key, fields, number of samples and clusters,
        cluster sizes, metrics and timings
    """
    import time

    t0 = time.perf_counter()
    dataset = samples._dataset
    embed_options = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        precision=precision,
    )
    if model is None:
        given = [
            f"{k}={v!r}"
            for k, v in embed_options.items()
            if v != _EMBED_DEFAULTS[k]
        ]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise InputError(
                f"{', '.join(given)} only {verb} when embeddings are "
                "computed: pass model= as well, or leave it out"
            )
    method_cls = methods.METHODS.get(method)
    reduce_name = _default_reduce(method_cls, reduce)
    chosen = [
        (methods.METHODS, method),
        (reduce_.REDUCERS, None if reduce_name == "none" else reduce_name),
    ]
    if model is not None:
        from .core.embedders import EMBEDDERS

        chosen.append((EMBEDDERS, model))
        EMBEDDERS.get(model)  # an unknown model fails here
    method_params, reduce_params, *embedder_params = schema.split_params(
        params, *chosen
    )
    if model is not None:
        embedder_params = EMBEDDERS.resolve(model, embedder_params[0])
    method_params = methods.METHODS.resolve(method, method_params)
    if reduce_name != "none":
        reduce_params = reduce_.REDUCERS.resolve(reduce_name, reduce_params)
    method_cls(**method_params)  # cross-parameter checks

    runs.check_new_key(samples, run_key)
    cluster_field = cluster_field or f"{run_key}_cluster"
    score_kind = "strength" if method == "hdbscan" else "distance"
    score_field = f"{run_key}_{score_kind}"
    ensure_new_field(dataset, cluster_field)
    ensure_new_field(dataset, score_field)
    projector = None
    if projection_brain_key is not None:
        from .core.projection import PROJECTIONS

        check_new_brain_key(samples, projection_brain_key)
        projector = PROJECTIONS.get("umap")()

    weights = {"reading": 2, "reducing": 4, "clustering": 4, "writing": 2}
    if model is not None:
        weights = dict(embedding=12, **weights)
    if projector is not None:
        weights["projecting"] = 4
    stage = _Stages(progress, weights)
    timings = {}

    embedded = None
    if model is not None:
        embedded = compute_embeddings(
            samples,
            embeddings_field,
            model=model,
            progress=stage("embedding"),
            **embed_options,
            **{f"{model}__{k}": v for k, v in embedder_params.items()},
        )
        timings["embed_s"] = time.perf_counter() - t0

    report = stage("reading")
    t = time.perf_counter()
    ids, X = read_vectors(samples, embeddings_field, skip_missing, report)
    timings["read_s"] = time.perf_counter() - t

    t = time.perf_counter()
    report = stage("reducing")
    Z, reducer = reduce_.preprocess(
        X,
        normalize,
        reduce_name,
        reduce_params,
        progress=report,
        knn_neighbors=projector and projector.params_["n_neighbors"],
    )
    timings["reduce_s"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("clustering")
    k_curve = None
    if method_cls.k_param and method_params[method_cls.k_param] is None:
        k, k_curve = methods.choose_k(method, method_params, Z)
        method_params[method_cls.k_param] = k
        logger.info("Chose k=%d by silhouette", k)
    fitted = method_cls(**method_params).fit(Z)
    labels = fitted.labels_
    timings["cluster_s"] = time.perf_counter() - t

    t = time.perf_counter()
    summary = _summarize(X, Z, labels, fitted, score_kind, ids)
    scores = summary.pop("scores")
    timings["summarize_s"] = time.perf_counter() - t

    points = None
    if projector is not None:
        t = time.perf_counter()
        points = _project_like_run(projector, X, reducer, stage("projecting"))
        timings["project_s"] = time.perf_counter() - t

    t = time.perf_counter()
    report = stage("writing")
    label_strings = labels.astype(str)
    score_values = np.where(np.isnan(scores), None, scores.astype(float))
    fields = [cluster_field, score_field]
    write_fields(
        dataset,
        ids,
        {cluster_field: label_strings, score_field: score_values},
        {cluster_field: fo.StringField, score_field: fo.FloatField},
        progress=report,
    )
    config = dict(
        method=method,
        params=method_params,
        embeddings_field=embeddings_field,
        cluster_field=cluster_field,
        score_field=score_field,
        score_kind=score_kind,
        normalize=bool(normalize),
        reduce=reduce_name,
        reduce_params=reduce_params,
        skip_missing=bool(skip_missing),
        model=model,
        n_samples=len(ids),
        fields=fields,
    )
    results = dict(
        clusters=summary["clusters"],
        metrics=summary["metrics"],
        k_curve=k_curve,
        n_samples=len(ids),
    )
    try:
        runs.register(samples, run_key, config, results)
        if points is not None:
            save_projection(
                samples,
                projection_brain_key,
                ids,
                points,
                "umap",
                projector.params_,
                embeddings_field,
                run_key=run_key,
            )
    except BaseException:
        runs.discard(samples, run_key, fields)
        raise
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    if progress is not None:
        progress(1.0, "done")

    sizes = {cid: c["size"] for cid, c in summary["clusters"].items()}
    return dict(
        run_key=run_key,
        method=method,
        cluster_field=cluster_field,
        score_field=score_field,
        n_samples=len(ids),
        n_clusters=sum(1 for cid in sizes if cid != STRING_NOISE),
        sizes=sizes,
        metrics=summary["metrics"],
        k_curve=k_curve,
        embeddings=embedded,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def _project_like_run(projector, X, reducer, progress):
    """A 2-D UMAP of ``X`` that reuses what the run's UMAP reduction
    computed: its features when the metrics agree, and its kNN graph when
    both layouts are fitted on every sample."""
    features = knn = None
    if isinstance(reducer, reduce_.UMAP):
        p, q = reducer.params_, projector.params_
        if p["metric"] == q["metric"]:
            features = reducer.features_
            fit_all = q["fit_samples"] is None or len(X) <= q["fit_samples"]
            if reducer.fit_idx_ is None and fit_all:
                knn = reducer.knn_
    return projector.fit_transform(
        X, progress=progress, features=features, knn=knn
    )


def _summarize(X, Z, labels, model, score_kind, ids):
    """Per-cluster sizes, centroids, representatives, per-sample scores
    and metrics."""
    cluster_ids, counts = metrics_.cluster_ids(labels)
    real = cluster_ids[cluster_ids != metrics_.NOISE]
    C_z = getattr(model, "cluster_centers_", None)
    if C_z is None or len(C_z) != len(real) or Z is not X:
        C_z = metrics_.centroids(Z, labels, real)
    else:
        C_z = C_z[real]
    if score_kind == "strength":
        scores = model.strength_.astype(np.float32)
    else:
        scores = metrics_.distances_to_centroids(Z, labels, real, C_z)
    C_x = C_z if Z is X else metrics_.centroids(X, labels, real)
    typical = metrics_.typical_first(labels, scores, score_kind, cluster_ids)

    centroid_of = dict(zip(real.tolist(), C_x))
    scored = ~np.isnan(scores)
    offset = labels + 1  # noise (-1) becomes bin 0
    score_sums = np.bincount(offset[scored], weights=scores[scored])
    score_counts = np.bincount(offset[scored], minlength=len(score_sums))
    clusters = {}
    for cid, size in zip(cluster_ids.tolist(), counts.tolist()):
        b = cid + 1
        n_scored = score_counts[b] if b < len(score_counts) else 0
        centroid = centroid_of.get(cid)
        clusters[str(cid)] = dict(
            size=int(size),
            centroid=None if centroid is None else centroid.tolist(),
            representatives=[str(ids[i]) for i in typical[cid]],
            score_mean=(float(score_sums[b] / n_scored) if n_scored else None),
        )
    return dict(
        clusters=clusters,
        metrics=metrics_.quality(Z, labels),
        scores=scores,
    )


def get_clustering_run_info(samples, run_key):
    """Config, timestamp, versions and statistics of a clustering run.

    Returns:
        a JSON-ready dict with ``run_key``, ``timestamp`` (ISO 8601),
        ``fiftyone_version``, ``plugin_version``, ``config`` and
        ``statistics`` (number of clusters, sizes, metrics, the k curve and,
        where present, cluster labels)
    """
    info = runs.get_info(samples, run_key)
    results = runs.load_results(samples, run_key)
    clusters = {
        cid: {k: v for k, v in c.items() if k != "centroid"}
        for cid, c in results.get("clusters", {}).items()
    }
    info["statistics"] = dict(
        n_samples=results.get("n_samples"),
        n_clusters=sum(1 for cid in clusters if cid != STRING_NOISE),
        metrics=results.get("metrics"),
        k_curve=results.get("k_curve"),
        clusters=clusters,
    )
    return info


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


# --------------------------------------------------------------------------
# Cluster labels from a multimodal LLM
# --------------------------------------------------------------------------

# Members per cluster among which spread-out images are picked
_LABEL_POOL_SIZE = 1000
# Seconds between two saves of labels while a labelling run goes on
_LABEL_FLUSH_EVERY = 1.0
_MAX_IMAGES_PER_CLUSTER = 20
_MAX_CONCURRENCY = 64


def _check_label_params(
    images_per_cluster,
    selection,
    seed,
    max_concurrency,
    max_clusters,
    detail,
    timeout,
    model,
    base_url,
    max_retries,
    backoff_base,
):
    from .core import labeling

    def _int(name, value, lo, hi):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{name} must be an integer; got {value!r}")
        if value != int(value) or not lo <= value <= hi:
            raise InputError(
                f"{name} must be an integer from {lo} to {hi}; got {value!r}"
            )
        return int(value)

    images_per_cluster = _int(
        "images_per_cluster", images_per_cluster, 1, _MAX_IMAGES_PER_CLUSTER
    )
    max_concurrency = _int(
        "max_concurrency", max_concurrency, 1, _MAX_CONCURRENCY
    )
    if max_clusters is not None:
        max_clusters = _int("max_clusters", max_clusters, 1, 10**9)
    _int("seed", seed, 0, 2**32 - 1)
    _int("max_retries", max_retries, 0, 20)
    if (
        isinstance(backoff_base, bool)
        or not isinstance(backoff_base, (int, float))
        or not 0 <= backoff_base <= 60
    ):
        raise InputError(
            f"backoff_base must be a number of seconds in [0, 60]; "
            f"got {backoff_base!r}"
        )
    if selection not in labeling.SELECTIONS:
        raise InputError(
            f"selection must be one of {', '.join(labeling.SELECTIONS)}; "
            f"got {selection!r}"
        )
    if detail not in labeling.DETAILS:
        raise InputError(
            f"detail must be one of {', '.join(labeling.DETAILS)}; "
            f"got {detail!r}"
        )
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout <= 3600
    ):
        raise InputError(
            f"timeout must be a number of seconds in (0, 3600]; "
            f"got {timeout!r}"
        )
    if not isinstance(model, str) or not model.strip():
        raise InputError("model must be a model name, e.g. 'gpt-4.1-mini'")
    if base_url is not None and (
        not isinstance(base_url, str)
        or not base_url.startswith(("http://", "https://"))
    ):
        raise InputError(
            "base_url must be an http(s) URL such as "
            "'http://localhost:8000/v1', or None for OpenAI's"
        )
    return images_per_cluster, max_concurrency, max_clusters


def _label_plan(
    samples, run_key, max_clusters, cluster_ids, overwrite, label_field
):
    """Checks a labelling request against the run; returns
    ``(config, results, label_field, todo, done)``."""
    dataset = samples._dataset
    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    clusters = results.get("clusters") or {}
    cluster_field = config["cluster_field"]
    label_field = label_field or f"{cluster_field}_label"

    if not isinstance(label_field, str) or not label_field.isidentifier():
        raise InputError(
            f"Field name {label_field!r} is not valid: use letters, digits "
            "and underscores, not starting with a digit"
        )
    owned = runs.owned_fields(config)
    protected = {
        cluster_field,
        config.get("score_field"),
        config.get("embeddings_field"),
    }
    if label_field in protected or (
        label_field in owned and label_field != config.get("label_field")
    ):
        raise InputError(
            f"Field '{label_field}' holds other data of run '{run_key}'; "
            "labels go into a field of their own: choose another label_field"
        )
    if label_field != config.get("label_field"):
        ensure_new_field(dataset, label_field)

    real = [cid for cid in clusters if cid != STRING_NOISE]
    if cluster_ids is not None:
        cluster_ids = [str(c) for c in cluster_ids]
        if STRING_NOISE in cluster_ids:
            raise InputError(
                "Cluster '-1' holds the noise (unclustered samples) and is "
                "not labelled"
            )
        unknown = [c for c in cluster_ids if c not in clusters]
        if unknown:
            raise InputError(
                f"Run '{run_key}' has no cluster {', '.join(unknown)}; its "
                f"clusters are 0 to {len(real) - 1}"
            )
        real = [c for c in real if c in set(cluster_ids)]
    real.sort(key=lambda c: (-clusters[c].get("size", 0), int(c)))
    if max_clusters is not None:
        real = real[:max_clusters]
    todo = [c for c in real if overwrite or not clusters[c].get("label")]
    done = [c for c in real if c not in todo]
    return config, results, label_field, todo, done


def estimate_label_clusters(
    samples,
    run_key,
    images_per_cluster=5,
    max_clusters=None,
    cluster_ids=None,
    overwrite=False,
    label_field=None,
    detail="low",
    context=None,
):
    """What :func:`label_clusters` would send, without sending anything.

    Args:
        samples: a FiftyOne dataset or view
        run_key: a clustering run key
        images_per_cluster (5): images shown per cluster
        max_clusters (None): label only the largest clusters
        cluster_ids (None): label only these clusters
        overwrite (False): whether clusters that have a label are sent too
        label_field (None): the label field (checked like
            :func:`label_clusters` does)
        detail ("low"): the image detail requested
        context (None): words about the dataset added to the prompt

    Returns:
        a dict with ``clusters`` (ids to send), ``already_labelled``,
        ``label_field``, ``requests``, ``images``, ``input_tokens``,
        ``output_tokens`` and ``total_tokens``

    Raises:
        InputError: if the request is not valid
    """
    _, results, label_field, todo, done = _label_plan(
        samples, run_key, max_clusters, cluster_ids, overwrite, label_field
    )
    est = _label_estimate(results, todo, images_per_cluster, detail, context)
    return dict(
        est,
        clusters=todo,
        already_labelled=done,
        label_field=label_field,
    )


def _label_estimate(results, todo, images_per_cluster, detail, context):
    """Requests, images and tokens of labelling ``todo``; clusters smaller
    than ``images_per_cluster`` show all their members."""
    from .core import labeling

    clusters = results.get("clusters") or {}
    n_images = sum(
        min(images_per_cluster, clusters[c].get("size", 0)) for c in todo
    )
    est = labeling.estimate(len(todo), images_per_cluster, detail, context)
    if est["images"]:
        base = labeling.estimate(len(todo), 0, detail, context)
        per_image = (est["input_tokens"] - base["input_tokens"]) / est[
            "images"
        ]
        est["input_tokens"] = base["input_tokens"] + int(
            round(per_image * n_images)
        )
        est["total_tokens"] = est["input_tokens"] + est["output_tokens"]
    est["images"] = n_images
    return est


def label_clusters(
    samples,
    run_key,
    model="gpt-4.1-mini",
    base_url=None,
    api_key=None,
    images_per_cluster=5,
    selection="representative",
    seed=51,
    context=None,
    max_concurrency=8,
    max_clusters=None,
    cluster_ids=None,
    overwrite=False,
    label_field=None,
    detail="low",
    timeout=60.0,
    max_retries=4,
    backoff_base=1.0,
    labeler=None,
    progress=None,
):
    """Names the clusters of a run by showing a few of their images to a
    multimodal LLM.

    Each cluster gets a short label and a one-sentence description. The
    label is written into ``label_field`` (a string field of its own, owned
    by the run and deleted with it) on every member of the cluster; the
    cluster ids are never touched. The run's results keep, per cluster,
    ``label``, ``description``, ``label_model`` and ``shown_ids`` (the
    samples shown). Labels are saved as clusters finish, so an interrupted
    run keeps them, and by default only clusters without a label are sent,
    so running again resumes. The noise cluster ``"-1"`` is not labelled.

    Images are sent as JPEG thumbnails of at most 512 px, never as the
    original files. Calling this function is consent to send them to the
    server at ``base_url`` (OpenAI's by default).

    Args:
        samples: a FiftyOne dataset or view
        run_key: a clustering run key
        model ("gpt-4.1-mini"): the model name
        base_url (None): an OpenAI-compatible server, e.g.
            ``http://localhost:8000/v1``; ``None`` uses OpenAI's
        api_key (None): the API key; default the ``OPENAI_API_KEY``
            environment variable. It is never stored or logged
        images_per_cluster (5): images shown per cluster (1 to 20)
        selection ("representative"): ``"representative"`` shows the most
            typical members (the run's representatives) plus members spread
            over the cluster (farthest-point picks on the embeddings);
            ``"random"`` draws members at random with ``seed``
        seed (51): the seed of random choices
        context (None): words about the dataset added to the prompt, e.g.
            ``"photos of birds taken by camera traps"``
        max_concurrency (8): the most requests in flight at once
        max_clusters (None): label only the largest clusters (``None``:
            all)
        cluster_ids (None): label only these clusters
        overwrite (False): whether clusters that already have a label are
            sent again
        label_field (None): the field for labels; default
            ``<cluster_field>_label``
        detail ("low"): the image detail requested (thumbnails are at most
            512 px, so ``"low"`` loses nothing)
        timeout (60.0): seconds allowed per request
        max_retries (4): retries of a request that was rate limited, failed
            on the server's side, timed out or gave an unusable answer
        backoff_base (1.0): the first retry delay in seconds (doubled at
            each retry, unless the server sends ``Retry-After``)
        labeler (None): a :class:`core.labeling.Labeler` to use instead of
            the OpenAI client (``model``, ``base_url``, ``api_key``,
            ``detail``, ``timeout``, ``max_retries`` and ``backoff_base``
            are then ignored)
        progress (None): an optional ``progress(fraction, label)`` callable

    Returns:
        a summary dict: ``run_key``, ``label_field``, ``model``,
        ``labelled`` (``{cluster id: {"label", "description"}}``),
        ``failed`` (``{cluster id: reason}``), ``already_labelled`` (ids
        skipped), ``requests`` (HTTP requests made, retries included),
        ``usage`` (tokens the server reported), ``estimate`` and
        ``elapsed_s``

    Raises:
        InputError: on bad parameters, a missing API key, an unknown run or
            a ``label_field`` that exists and does not belong to the run,
            before any request
        core.labeling.FatalLabelError: if the server rejected the key, or
            the model or endpoint does not exist (labels finished before
            are kept)
    """
    import os
    import time

    from .core import labeling
    from .data import set_values_by_group

    t0 = time.perf_counter()
    images_per_cluster, max_concurrency, max_clusters = _check_label_params(
        images_per_cluster,
        selection,
        seed,
        max_concurrency,
        max_clusters,
        detail,
        timeout,
        model,
        base_url,
        max_retries,
        backoff_base,
    )
    if labeler is None:
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise InputError(
                "No API key for the LLM server: set the OPENAI_API_KEY "
                "environment variable (in the App: the plugin secret "
                "OPENAI_API_KEY), or pass api_key=. Local servers that need "
                "no key accept any placeholder value"
            )
    dataset = samples._dataset
    if dataset.media_type != "image":
        raise InputError(
            f"Dataset '{dataset.name}' holds {dataset.media_type} samples; "
            "cluster labelling shows images and needs an image dataset"
        )
    config, results, label_field, todo, done = _label_plan(
        samples, run_key, max_clusters, cluster_ids, overwrite, label_field
    )
    clusters = results["clusters"]
    cluster_field = config["cluster_field"]
    est = _label_estimate(results, todo, images_per_cluster, detail, context)
    jobs = _label_jobs(
        dataset, config, clusters, todo, images_per_cluster, selection, seed
    )

    if labeler is None:
        labeler = labeling.OpenAILabeler(
            api_key,
            model=model,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            detail=detail,
        )
    model_name = labeler.model or model

    # Labels of clusters labelled earlier go into a field that is new
    schema = dataset.get_field_schema()
    field_ready = label_field in schema and label_field == config.get(
        "label_field"
    )
    pending = {}
    if not field_ready:
        pending = {
            c: clusters[c]["label"]
            for c in clusters
            if c not in todo and clusters[c].get("label")
        }
    state = {"last": time.monotonic(), "dirty": False}
    labelled = {}
    failed = {}

    def flush():
        nonlocal field_ready
        if pending:
            if not field_ready:
                if label_field not in dataset.get_field_schema():
                    dataset.add_sample_field(label_field, fo.StringField)
                fields = list(config.get("fields", []))
                if label_field not in fields:
                    fields.append(label_field)
                runs.update_config(
                    samples, run_key, label_field=label_field, fields=fields
                )
                config["fields"] = fields
                config["label_field"] = label_field
                field_ready = True
            set_values_by_group(dataset, cluster_field, pending, label_field)
            pending.clear()
        if state["dirty"]:
            runs.save_results(samples, run_key, results)
            state["dirty"] = False
        state["last"] = time.monotonic()

    def on_outcome(outcome):
        cid = outcome.cluster_id
        if outcome.label is None:
            failed[cid] = outcome.error
            logger.warning("Cluster %s not labelled: %s", cid, outcome.error)
        else:
            name = outcome.label.name
            clusters[cid].update(
                label=name,
                description=outcome.label.description,
                label_model=model_name,
                shown_ids=[str(i) for i in outcome.shown_ids],
            )
            labelled[cid] = dict(
                label=name, description=outcome.label.description
            )
            pending[cid] = name
            state["dirty"] = True
        if time.monotonic() - state["last"] >= _LABEL_FLUSH_EVERY:
            flush()

    logger.info(
        "Labelling %d clusters of run '%s' with %s (%d images)",
        len(todo),
        run_key,
        model_name,
        est["images"],
    )
    try:
        labeling.label_clusters(
            jobs,
            labeler,
            context=context,
            max_concurrency=max_concurrency,
            on_outcome=on_outcome,
            progress=progress,
        )
    finally:
        flush()
        close = getattr(labeler, "close", None)
        if close is not None:
            close()

    summary = dict(
        run_key=run_key,
        label_field=label_field,
        model=model_name,
        labelled=labelled,
        failed=failed,
        already_labelled=done,
        requests=getattr(labeler, "n_requests", len(jobs)),
        usage=dict(getattr(labeler, "usage", {}) or {}),
        estimate=est,
        elapsed_s=round(time.perf_counter() - t0, 3),
    )
    if failed:
        logger.warning(
            "%d of %d clusters could not be labelled", len(failed), len(todo)
        )
    if progress is not None:
        progress(1.0, "done")
    return summary


def _label_jobs(
    dataset, config, clusters, todo, images_per_cluster, selection, seed
):
    """The images to show for each cluster to label, as
    :class:`core.labeling.Job` s."""
    from fiftyone import ViewField as F

    from .core import labeling
    from .core.reduce import l2_normalize

    if not todo:
        return []
    cluster_field = config["cluster_field"]
    view = dataset.match(F(cluster_field).is_in(todo))
    ids, cids = view.values(["id", cluster_field])
    members = {c: [] for c in todo}
    for _id, cid in zip(ids, cids):
        members[cid].append(_id)

    rng = np.random.default_rng(seed)
    pools = {}
    for cid in todo:
        m = members[cid]
        if selection == "representative" and len(m) > _LABEL_POOL_SIZE:
            reps = list(clusters[cid].get("representatives", []))
            keep = set(reps)
            others = [i for i in m if i not in keep]
            pick = rng.choice(len(others), _LABEL_POOL_SIZE, replace=False)
            m = reps + [others[i] for i in np.sort(pick)]
        pools[cid] = m

    vectors = {}
    field = config.get("embeddings_field")
    if selection == "representative" and field:
        pool_ids = [i for cid in todo for i in pools[cid]]
        try:
            vids, X = read_vectors(
                dataset.select(pool_ids), field, skip_missing=True
            )
        except InputError as e:
            logger.warning(
                "Cannot read '%s' (%s): spread-out images are picked at "
                "random",
                field,
                e,
            )
        else:
            if config.get("normalize"):
                X = l2_normalize(X)
            row = {str(i): r for r, i in enumerate(vids)}
            for cid in todo:
                have = [i for i in pools[cid] if i in row]
                if have:
                    pools[cid] = have
                    vectors[cid] = X[[row[i] for i in have]]

    shown = {}
    for cid in todo:
        shown[cid] = labeling.select_members(
            pools[cid],
            vectors.get(cid),
            images_per_cluster,
            selection,
            representatives=clusters[cid].get("representatives", []),
            seed=[int(seed), int(cid)],
        )
    all_shown = [i for cid in todo for i in shown[cid]]
    sids, paths = dataset.select(all_shown).values(["id", "filepath"])
    path_of = dict(zip(sids, paths))
    return [
        labeling.Job(cid, [path_of[i] for i in shown[cid]], list(shown[cid]))
        for cid in todo
    ]


# --------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------


def compute_embeddings(
    samples,
    embeddings_field,
    model="open_clip",
    batch_size=None,
    num_workers=None,
    device="auto",
    precision="auto",
    skip_failures=True,
    overwrite=False,
    progress=None,
    **params,
):
    """Computes one float32 vector per sample into a vector field.

    Images are decoded and preprocessed by worker processes while the model
    runs batched inference; vectors are written to the database in chunks
    as they are computed, so an interrupted run keeps what it finished and
    a second call with ``overwrite=False`` resumes where it stopped.

    Args:
        samples: a FiftyOne image dataset or view
        embeddings_field: the name of the sample ``VectorField`` to write
            (created if missing)
        model ("open_clip"): the embedder: ``"open_clip"``,
            ``"torchvision"``, ``"pixels"`` or ``"zoo"`` (any FiftyOne zoo
            model that exposes embeddings)
        batch_size (None): images per batch; ``None`` picks 16 on a CPU and
            64 on a GPU
        num_workers (None): worker processes that decode images; ``0``
            decodes in this process; ``None`` picks one per core but one
            on a CPU (up to 4), up to 8 on a GPU
        device ("auto"): ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``
        precision ("auto"): the floating-point type the model runs in:
            ``"auto"`` (float16 on a GPU, bfloat16 on a CPU with Intel AMX,
            where it is 3-4x faster than float32; float32 otherwise),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``. Vectors are
            stored as float32 whatever the precision. Zoo models run as
            FiftyOne configures them, so only ``"auto"`` applies to them
        skip_failures (True): whether samples whose image is missing,
            unreadable or corrupt are skipped (they get no vector and are
            reported). Otherwise the first such file raises an error and
            nothing is written: vectors are then kept in memory and written
            once every image has been embedded
        overwrite (False): whether to recompute samples that already have a
            vector in ``embeddings_field`` (otherwise they are skipped)
        progress (None): a ``progress(fraction, label)`` callable, or
            whether to show a progress bar (``None`` follows
            ``fo.config.show_progress_bars``)
        **params: the embedder's parameters, as ``<model>__<param>`` (for
            example ``open_clip__pretrained="/path/to/checkpoint.pt"`` or
            ``pixels__size=32``); see ``core.embedders.EMBEDDERS``

    Returns:
        a dict with ``embeddings_field``, ``model``, ``params``, ``dim``,
        ``precision`` (the model's floating-point type; ``None`` for
        ``pixels`` and zoo models), ``embedded`` (vectors written),
        ``skipped`` (samples that already had one), ``failed`` (count),
        ``failed_files`` (the first few unreadable files), ``first_error``,
        ``seconds`` and ``images_per_s``

    Raises:
        ParamError: on an unknown embedder, parameter, device or precision
        InputError: on a bad field or collection
        WeightsError: if the model's weights are neither cached nor
            downloadable (raised at once, before any image is read)
        ImageError: on an unreadable image when ``skip_failures`` is False
    """
    import time

    from .core import embedders as emb

    cls = emb.EMBEDDERS.get(model)
    resolved = emb.EMBEDDERS.resolve(model, params)
    _emb_check_args(
        embeddings_field, batch_size, num_workers, skip_failures, overwrite
    )
    _emb_check_collection(samples)
    dataset = samples._dataset
    field = embeddings_field
    exists = _emb_check_field(dataset, field)
    if cls.in_core:
        device = emb.resolve_device(device)
        emb.resolve_precision(precision, device)  # an unknown one fails here
    else:
        if device not in (None, "auto"):
            emb.resolve_device(device)
        if precision not in (None, "auto"):
            raise schema.ParamError(
                f"precision={precision!r} does not apply to zoo models, "
                "which run in the precision FiftyOne gives them; leave it "
                "'auto'"
            )

    todo = samples
    if exists and not overwrite:
        todo = samples.exists(field, False)
    total = samples.count()
    ids, paths = todo.values(["id", "filepath"])
    result = {
        "embeddings_field": field,
        "model": model,
        "params": resolved,
        "dim": None,
        "precision": None,
        "embedded": 0,
        "skipped": total - len(ids),
        "failed": 0,
        "failed_files": [],
        "first_error": None,
        "seconds": 0.0,
        "images_per_s": 0.0,
    }
    if not ids:
        logger.info(
            "All %d samples already have '%s'; nothing to compute (pass "
            "overwrite=True to recompute)",
            total,
            field,
        )
        return result

    start = time.perf_counter()
    if not cls.in_core:
        return _emb_zoo(
            todo,
            ids,
            field,
            resolved["name"],
            batch_size,
            num_workers,
            device,
            skip_failures,
            progress,
            result,
            start,
        )

    embedder = cls(**resolved)
    embedder.check()
    embedder.load(device, precision)
    writer = _EmbWriter(dataset, field, ids, buffered=not skip_failures)
    with _EmbProgress(progress, len(ids)) as report:
        stats = emb.embed_paths(
            embedder,
            paths,
            batch_size=batch_size,
            num_workers=num_workers,
            skip_failures=skip_failures,
            on_chunk=writer.add,
            chunk_size=_EMB_WRITE_EVERY,
            progress=report,
        )
        writer.finish()

    failures = stats["failures"]
    result.update(
        dim=stats["dim"],
        precision=stats["precision"],
        embedded=stats["embedded"],
        failed=len(failures),
        failed_files=[path for path, _ in failures[:_EMB_SHOW_FAILED]],
        first_error=failures[0][1] if failures else None,
        seconds=round(time.perf_counter() - start, 3),
        images_per_s=round(stats["images_per_s"], 2),
    )
    if failures:
        logger.warning(
            "%d images could not be read and have no '%s' (first: %s)",
            len(failures),
            field,
            ", ".join(result["failed_files"]),
        )
    return result


# Vectors are written to the database every this many samples
_EMB_WRITE_EVERY = 2048

# Failed files listed in the result
_EMB_SHOW_FAILED = 10


def _emb_check_args(field, batch_size, num_workers, skip_failures, overwrite):
    from .core.schema import ParamError

    if not isinstance(field, str) or not field.isidentifier():
        raise InputError(
            f"embeddings_field must be a field name (letters, digits and "
            f"underscores, not starting with a digit); got {field!r}"
        )
    for name, value, low in (
        ("batch_size", batch_size, 1),
        ("num_workers", num_workers, 0),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{name} must be an integer; got {value!r}")
        if value < low:
            raise ParamError(f"{name} must be >= {low}; got {value}")
    for name, value in (
        ("skip_failures", skip_failures),
        ("overwrite", overwrite),
    ):
        if not isinstance(value, bool):
            raise ParamError(f"{name} must be True or False")


def _emb_check_collection(samples):
    if samples._is_generated or samples._is_dynamic_groups:
        raise InputError(
            "compute_embeddings writes sample fields: run it on the dataset "
            "or a view of its samples, not on patches, frames, clips or "
            "dynamic groups"
        )
    media_type = samples.media_type
    if media_type == "group":
        raise InputError(
            "compute_embeddings needs image samples; this is a grouped "
            "collection: select a slice first, e.g. "
            "dataset.select_group_slices('left')"
        )
    if media_type != "image":
        raise InputError(
            f"compute_embeddings supports image collections; this one "
            f"holds {media_type} samples"
        )


def _emb_check_field(dataset, field):
    """Returns whether ``field`` exists; raises if it is not a vector
    field."""
    schema_ = dataset.get_field_schema()
    if field not in schema_:
        return False
    f = schema_[field]
    if not isinstance(f, (fo.VectorField, fo.ArrayField)):
        raise InputError(
            f"Field '{field}' exists and is a {type(f).__name__}, not a "
            "vector field; choose another embeddings_field"
        )
    return True


class _EmbWriter:
    """Writes chunks of vectors with bulk updates; with ``buffered``, keeps
    them until :meth:`finish`."""

    def __init__(self, dataset, field, ids, buffered):
        self.dataset = dataset
        self.field = field
        self.ids = ids
        self.buffered = buffered
        self.pending = []
        self.checked = False

    def add(self, indices, vectors):
        if self.buffered:
            self.pending.append((indices, vectors))
        else:
            self._write(indices, vectors)

    def finish(self):
        pending, self.pending = self.pending, []
        for indices, vectors in pending:
            self._write(indices, vectors)

    def _write(self, indices, vectors):
        if not self.checked:
            self._check_dim(vectors.shape[1], {self.ids[i] for i in indices})
            self.checked = True
        for start in range(0, len(indices), _EMB_WRITE_EVERY):
            stop = start + _EMB_WRITE_EVERY
            values = {
                self.ids[i]: v
                for i, v in zip(indices[start:stop], vectors[start:stop])
            }
            self.dataset.set_values(
                self.field, values, key_field="id", validate=False
            )

    def _check_dim(self, dim, mine):
        """Refuses to mix vector lengths in one field: compares with a
        vector this run does not replace."""
        if self.field not in self.dataset.get_field_schema():
            self.dataset.add_sample_field(self.field, fo.VectorField)
            return
        from .data import _decode, vector_field_db_name

        db_field = vector_field_db_name(self.dataset, self.field)
        cursor = self.dataset._aggregate(
            pipeline=[
                {"$match": {db_field: {"$ne": None}}},
                {"$project": {db_field: 1}},
                {"$limit": 1000},
            ]
        )
        for doc in cursor:
            if str(doc["_id"]) in mine:
                continue
            have = _decode(doc[db_field], {}).shape[0]
            if have != dim:
                raise InputError(
                    f"Field '{self.field}' holds {have}-d vectors and this "
                    f"model computes {dim}-d ones; choose another "
                    "embeddings_field, or delete the field first"
                )
            return


class _EmbProgress:
    """Forwards ``(fraction, label)`` to a callable, or drives a FiftyOne
    progress bar of images."""

    def __init__(self, progress, total):
        self.callback = progress if callable(progress) else None
        self.total = total
        self.done = 0
        self.bar = None
        if self.callback is None:
            import fiftyone.core.utils as fou

            self.bar = fou.ProgressBar(
                total=total, progress=progress, iters_str="images"
            )

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *args):
        if self.bar is not None:
            self.bar.__exit__(*args)

    def __call__(self, fraction, label=None):
        if self.callback is not None:
            self.callback(fraction, label)
            return
        done = int(round(fraction * self.total))
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done


def _emb_zoo(
    todo,
    ids,
    field,
    name,
    batch_size,
    num_workers,
    device,
    skip_failures,
    progress,
    result,
    start,
):
    """Runs a FiftyOne zoo model through FiftyOne's compute_embeddings."""
    import time

    import fiftyone.zoo as foz

    from .core import embedders as emb

    _emb_zoo_check(name)
    kwargs = {}
    if device not in (None, "auto"):
        kwargs["device"] = device
    try:
        with emb.hub_offline_unless_reachable():
            model = foz.load_zoo_model(name, **kwargs)
    except Exception as e:
        raise emb.WeightsError(
            f"Zoo model '{name}' could not be loaded ({type(e).__name__}: "
            f"{e}). If its weights come from the internet, download them on "
            "a machine with access, or use model='open_clip' or "
            "'torchvision' with a local checkpoint file"
        ) from e
    if not getattr(model, "has_embeddings", False):
        raise InputError(f"Zoo model '{name}' does not expose embeddings")

    dataset = todo._dataset
    target = dataset.select(ids, ordered=True)
    report = None
    if callable(progress):
        import fiftyone.core.utils as fou

        def report(pb):
            done = pb.iteration
            rate = done / max(1e-9, time.perf_counter() - start)
            progress(
                done / max(1, len(ids)),
                f"{done:,}/{len(ids):,} images, {rate:.1f} images/s",
            )

        report = fou.report_progress(report, dt=1.0)
    run = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        progress=report if report is not None else progress,
    )
    if skip_failures:
        if field not in dataset.get_field_schema():
            dataset.add_sample_field(field, fo.VectorField)
        target.compute_embeddings(
            model, embeddings_field=field, skip_failures=True, **run
        )
        missing = dataset.select(ids).exists(field, False)
        if batch_size != 1 and missing.count():
            # FiftyOne skips a whole batch for one unreadable image: retry
            # those samples one by one so only the bad files stay empty
            retry = dict(run, batch_size=1, progress=False)
            missing.compute_embeddings(
                model, embeddings_field=field, skip_failures=True, **retry
            )
        failed = missing.count()
        failed_files = missing.limit(_EMB_SHOW_FAILED).values("filepath")
    else:
        vectors = target.compute_embeddings(model, skip_failures=False, **run)
        vectors = np.asarray(vectors, dtype=np.float32)
        writer = _EmbWriter(dataset, field, ids, buffered=False)
        writer.add(np.arange(len(ids)), vectors)
        failed, failed_files = 0, []

    seconds = time.perf_counter() - start
    embedded = len(ids) - failed
    first = dataset.select(ids).exists(field).limit(1).values(field)
    result.update(
        dim=int(np.asarray(first[0]).size) if first else None,
        embedded=embedded,
        failed=failed,
        failed_files=failed_files,
        first_error="could not be embedded" if failed else None,
        seconds=round(seconds, 3),
        images_per_s=round(embedded / seconds, 2) if seconds else 0.0,
    )
    return result


def _emb_zoo_check(name):
    """Returns the zoo model's manifest entry; fails fast if it is unknown,
    exposes no embeddings, or cannot be downloaded."""
    import fiftyone.zoo as foz

    from .core import embedders as emb

    try:
        zoo_model = foz.get_zoo_model(name)
    except ValueError:
        import difflib

        names = foz.list_zoo_models(tags="embeddings")
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
        hint = ", ".join(close or names[:8])
        raise InputError(
            f"Unknown zoo model {name!r} (zoo__name). Zoo models with "
            f"embeddings include: {hint}; see "
            "fiftyone.zoo.list_zoo_models(tags='embeddings')"
        ) from None
    if not zoo_model.has_tag("embeddings"):
        raise InputError(
            f"Zoo model '{name}' does not expose embeddings; see "
            "fiftyone.zoo.list_zoo_models(tags='embeddings')"
        )
    if foz.is_zoo_model_downloaded(name) is False:
        url = getattr(getattr(zoo_model.manager, "config", None), "url", "")
        emb.check_downloadable(
            url or "https://huggingface.co",
            f"of zoo model '{name}'",
            "Download them on a machine with internet access "
            f"(`fiftyone zoo models download {name}`) into "
            f"{fo.config.model_zoo_dir}, or use model='open_clip' or "
            "'torchvision' with a local checkpoint file",
        )
    return zoo_model


# --------------------------------------------------------------------------
# Curation of a run's clusters: tables, views, labels, tags and merges
# --------------------------------------------------------------------------

_MAX_CLUSTER_LABEL = 200
_REPRESENTATIVES = 20


def _cluster_list(ids):
    ids = sorted(ids, key=int)
    if len(ids) > 12:
        return f"{', '.join(ids[:10])}, ..., {ids[-1]} ({len(ids)} in all)"
    return ", ".join(ids) if ids else "none"


def _check_cluster_id(results, run_key, cluster_id, allow_noise=True):
    """The cluster id ``cluster_id`` of a run as a string; raises an
    :class:`InputError` if the run has no such cluster."""
    clusters = results.get("clusters") or {}
    if isinstance(cluster_id, (int, np.integer)) and not isinstance(
        cluster_id, bool
    ):
        cluster_id = str(int(cluster_id))
    if not isinstance(cluster_id, str):
        raise InputError(
            f"A cluster id is a string such as '0' (noise: '-1'); got "
            f"{cluster_id!r}"
        )
    cid = cluster_id.strip()
    if cid == STRING_NOISE and not allow_noise:
        raise InputError(
            "Cluster '-1' holds the noise (unclustered samples): it cannot "
            "be named or merged"
        )
    if cid not in clusters:
        raise InputError(
            f"Run '{run_key}' has no cluster '{cid}'. Its clusters: "
            f"{_cluster_list(list(clusters))}"
        )
    return cid


def _check_text(name, value, max_len=_MAX_CLUSTER_LABEL):
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{name} must be a non-empty string; got {value!r}")
    value = value.strip()
    if len(value) > max_len:
        raise InputError(
            f"{name} must be at most {max_len} characters; got {len(value)}"
        )
    return value


def _log_edit(results, op, **details):
    from datetime import datetime, timezone

    entry = dict(op=op, at=datetime.now(timezone.utc).isoformat())
    entry.update(details)
    results.setdefault("edits", []).append(entry)


def get_cluster_table(samples, run_key, view=None):
    """A summary of a clustering run and one row per cluster, for
    browsing.

    Args:
        samples: a FiftyOne dataset or view
        run_key: a clustering run key
        view (None): a view of the dataset; if given, each row also counts
            the cluster's members in it (``in_view``)

    Returns:
        a JSON-ready dict with ``run_key``, ``method``, ``params``,
        ``embeddings_field``, ``cluster_field``, ``score_field``,
        ``score_kind``, ``label_field`` (or None), ``n_samples``,
        ``n_clusters`` (noise excluded), ``metrics``, ``edits`` (manual
        renames and merges since the run was computed) and ``clusters``:
        a list of dicts with ``id``, ``label``, ``size``, ``score_mean``
        and ``in_view``, largest first, noise last

    Raises:
        InputError: if there is no clustering run ``run_key``
    """
    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    clusters = results.get("clusters") or {}
    cluster_field = config["cluster_field"]
    counts = None
    if view is not None:
        if cluster_field in view._dataset.get_field_schema():
            counts = view.count_values(cluster_field)
        else:
            counts = {}
    rows = []
    for cid, c in clusters.items():
        score = c.get("score_mean")
        rows.append(
            dict(
                id=cid,
                label=c.get("label"),
                size=int(c.get("size", 0)),
                score_mean=None if score is None else float(score),
                in_view=None if counts is None else int(counts.get(cid, 0)),
            )
        )
    rows.sort(
        key=lambda r: (r["id"] == STRING_NOISE, -r["size"], int(r["id"]))
    )
    return dict(
        run_key=run_key,
        method=config.get("method"),
        params=config.get("params") or {},
        embeddings_field=config.get("embeddings_field"),
        cluster_field=cluster_field,
        score_field=config.get("score_field"),
        score_kind=config.get("score_kind"),
        label_field=config.get("label_field"),
        n_samples=results.get("n_samples", config.get("n_samples")),
        n_clusters=sum(1 for cid in clusters if cid != STRING_NOISE),
        metrics=results.get("metrics") or {},
        edits=list(results.get("edits") or []),
        clusters=rows,
    )


def cluster_view(samples, run_key, cluster_id):
    """The samples of one cluster of a run, most typical first.

    Members are sorted by the run's per-sample score: ascending distance to
    the cluster centre (``score_kind="distance"``) or descending membership
    strength (``"strength"``).

    Args:
        samples: a FiftyOne dataset or view (the result keeps only its
            samples)
        run_key: a clustering run key
        cluster_id: a cluster id such as ``"3"`` (noise: ``"-1"``)

    Returns:
        a :class:`fiftyone.core.view.DatasetView`

    Raises:
        InputError: if there is no such run or cluster
    """
    from fiftyone import ViewField as F

    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    cid = _check_cluster_id(results, run_key, cluster_id)
    view = samples.match(F(config["cluster_field"]) == cid)
    score_field = config.get("score_field")
    if score_field and score_field in samples._dataset.get_field_schema():
        reverse = config.get("score_kind") == "strength"
        view = view.sort_by(score_field, reverse=reverse)
    return view


def rename_cluster(samples, run_key, cluster_id, label):
    """Names a cluster by hand.

    Writes ``label`` into the run's label field on every member of the
    cluster (the field is ``<cluster_field>_label`` and is created, and
    owned by the run, if the run has none yet), and stores it as the
    cluster's ``label`` in the run's results (``label_source="manual"``).
    Cluster ids are never changed. :func:`label_clusters` skips clusters
    that have a label unless asked to overwrite.

    Args:
        samples: a FiftyOne dataset or view (used only to find the dataset)
        run_key: a clustering run key
        cluster_id: the cluster to name, such as ``"3"``
        label: the new name (at most 200 characters)

    Returns:
        a dict with ``run_key``, ``cluster_id``, ``label``,
        ``previous_label``, ``label_field`` and ``n_samples``

    Raises:
        InputError: if there is no such run or cluster, the cluster is the
            noise, the label is empty or too long, or the label field would
            overwrite a field that does not belong to the run
    """
    from .data import set_values_by_group

    dataset = samples._dataset
    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    cid = _check_cluster_id(results, run_key, cluster_id, allow_noise=False)
    label = _check_text("label", label)
    cluster_field = config["cluster_field"]
    label_field = config.get("label_field") or f"{cluster_field}_label"

    created = not config.get("label_field")
    if created:
        ensure_new_field(dataset, label_field)
    import copy

    original = copy.deepcopy(results)
    entry = results["clusters"][cid]
    previous = entry.get("label")
    saved = False
    try:
        if label_field not in dataset.get_field_schema():
            dataset.add_sample_field(label_field, fo.StringField)
        set_values_by_group(dataset, cluster_field, {cid: label}, label_field)
        entry["label"] = label
        entry["label_source"] = "manual"
        _log_edit(
            results, "rename", cluster_id=cid, label=label, previous=previous
        )
        runs.save_results(samples, run_key, results)
        saved = True
        if created:
            fields = list(config.get("fields") or []) + [label_field]
            runs.update_config(
                samples, run_key, label_field=label_field, fields=fields
            )
    except BaseException:
        if created:
            remove_fields(dataset, [label_field])
        elif label_field in dataset.get_field_schema():
            set_values_by_group(
                dataset, cluster_field, {cid: previous}, label_field
            )
        if saved:
            runs.save_results(samples, run_key, original)
        raise
    return dict(
        run_key=run_key,
        cluster_id=cid,
        label=label,
        previous_label=previous,
        label_field=label_field,
        n_samples=int(entry.get("size", 0)),
    )


def tag_cluster(samples, run_key, cluster_id, tag):
    """Adds a sample tag to every member of a cluster.

    Args:
        samples: a FiftyOne dataset or view (only its samples are tagged)
        run_key: a clustering run key
        cluster_id: a cluster id such as ``"3"`` (noise: ``"-1"``)
        tag: the tag

    Returns:
        a dict with ``run_key``, ``cluster_id``, ``tag`` and ``n_samples``
        (the members tagged)

    Raises:
        InputError: if there is no such run or cluster or the tag is empty
    """
    from fiftyone import ViewField as F

    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    cid = _check_cluster_id(results, run_key, cluster_id)
    tag = _check_text("tag", tag)
    view = samples.match(F(config["cluster_field"]) == cid)
    view.tag_samples(tag)
    return dict(
        run_key=run_key, cluster_id=cid, tag=tag, n_samples=view.count()
    )


def merge_clusters(samples, run_key, cluster_ids, into=None):
    """Merges clusters of a run into one.

    Every member of the merged clusters gets the cluster id ``into`` in the
    run's cluster field (and its label, if the run has a label field); the
    run's results get the merged cluster's size, size-weighted centroid and
    mean score, its most typical members as representatives, and lose the
    merged clusters. Ids of other clusters do not change. Per-sample scores
    are kept (distance to, or strength in, the cluster a sample came from),
    and the run's quality metrics stay those of the computed run; the merge
    is recorded in the results' ``edits``.

    Args:
        samples: a FiftyOne dataset or view (used only to find the dataset)
        run_key: a clustering run key
        cluster_ids: the clusters to merge (``into`` may be among them)
        into (None): the cluster that receives the others; default the
            largest of ``cluster_ids``

    Returns:
        a dict with ``run_key``, ``into``, ``merged`` (the ids that no
        longer exist), ``size`` and ``n_clusters``

    Raises:
        InputError: if there is no such run or cluster, the noise cluster
            is involved, or nothing would be merged
    """
    dataset = samples._dataset
    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    clusters = results["clusters"]
    if isinstance(cluster_ids, (str, int, np.integer)) or not hasattr(
        cluster_ids, "__iter__"
    ):
        raise InputError(
            f"cluster_ids must be a list of cluster ids; got {cluster_ids!r}"
        )
    ids = []
    for c in cluster_ids:
        cid = _check_cluster_id(results, run_key, c, allow_noise=False)
        if cid not in ids:
            ids.append(cid)
    if into is None:
        if not ids:
            raise InputError("cluster_ids is empty: nothing to merge")
        into = max(ids, key=lambda c: (clusters[c].get("size", 0), -int(c)))
    else:
        into = _check_cluster_id(results, run_key, into, allow_noise=False)
    sources = [c for c in ids if c != into]
    if not sources:
        raise InputError(
            f"Nothing to merge: give at least one cluster other than "
            f"'{into}'"
        )

    parts = [clusters[into]] + [clusters[c] for c in sources]
    sizes = np.array([p.get("size", 0) for p in parts], dtype=np.float64)
    size = int(sizes.sum())
    centroids = [p.get("centroid") for p in parts]
    if all(c is not None for c in centroids) and size > 0:
        C = np.asarray(centroids, dtype=np.float32)
        w = (sizes / sizes.sum()).astype(np.float32)
        centroid = (w[:, None] * C).sum(axis=0, dtype=np.float32).tolist()
    else:
        centroid = clusters[into].get("centroid")
    scored = [
        (p["score_mean"], s)
        for p, s in zip(parts, sizes)
        if p.get("score_mean") is not None and s > 0
    ]
    score_mean = (
        float(sum(m * s for m, s in scored) / sum(s for _, s in scored))
        if scored
        else None
    )
    label = next((p["label"] for p in parts if p.get("label")), None)
    representatives = _merged_representatives(dataset, config, parts)

    from fiftyone import ViewField as F

    from .data import set_values_by_group

    cluster_field = config["cluster_field"]
    label_field = config.get("label_field")
    if label_field not in dataset.get_field_schema():
        label_field = None
    # What the members hold now, to put back if the merge fails
    members = dataset.match(F(cluster_field).is_in(sources + [into]))
    fields = ["id", cluster_field] + ([label_field] if label_field else [])
    before = members.values(fields)
    try:
        set_values_by_group(
            dataset, cluster_field, {c: into for c in sources}, cluster_field
        )
        if label_field:
            set_values_by_group(
                dataset, cluster_field, {into: label}, label_field
            )
        _merge_results(
            clusters,
            results,
            into,
            sources,
            size,
            centroid,
            score_mean,
            label,
            representatives,
        )
        runs.save_results(samples, run_key, results)
    except BaseException:
        old = dict(zip(before[0], before[1]))
        dataset.set_values(cluster_field, old, key_field="id")
        if label_field:
            old = dict(zip(before[0], before[2]))
            dataset.set_values(label_field, old, key_field="id")
        raise
    return dict(
        run_key=run_key,
        into=into,
        merged=sources,
        size=size,
        n_clusters=sum(1 for c in clusters if c != STRING_NOISE),
    )


def _merge_results(
    clusters,
    results,
    into,
    sources,
    size,
    centroid,
    score_mean,
    label,
    representatives,
):
    """Updates a run's results dict for a merge of ``sources`` into
    ``into``."""
    target = clusters[into]
    merged_from = list(target.get("merged_from") or [])
    for c in sources:
        merged_from += [c] + list(clusters[c].get("merged_from") or [])
        del clusters[c]
    target.update(
        size=size,
        centroid=centroid,
        representatives=representatives,
        score_mean=score_mean,
        merged_from=merged_from,
    )
    if label is not None and not target.get("label"):
        target["label"] = label
    _log_edit(results, "merge", into=into, merged=sources, size=size)


def _merged_representatives(dataset, config, parts):
    """The most typical members of merged clusters, from the union of
    their representatives (which holds the top of the union)."""
    ids = []
    for p in parts:
        ids += [i for i in p.get("representatives") or [] if i not in ids]
    score_field = config.get("score_field")
    if not ids or not score_field:
        return ids[:_REPRESENTATIVES]
    if score_field not in dataset.get_field_schema():
        return ids[:_REPRESENTATIVES]
    found, values = dataset.select(ids).values(["id", score_field])
    score = dict(zip(found, values))
    sign = -1.0 if config.get("score_kind") == "strength" else 1.0
    ids = [i for i in ids if i in score]
    ids.sort(
        key=lambda i: np.inf if score[i] is None else sign * float(score[i])
    )
    return ids[:_REPRESENTATIVES]


# --------------------------------------------------------------------------
# 2-D projections for the App's Embeddings panel
# --------------------------------------------------------------------------

# The Embeddings panel colours by at most this many categories
_PANEL_MAX_CATEGORIES = 100
_OTHER_CLUSTERS = "other"


def compute_projection(
    samples,
    brain_key,
    embeddings_field=None,
    run_key=None,
    method="umap",
    skip_missing=False,
    progress=None,
    **params,
):
    """Computes 2-D points of a collection's embeddings for the App's
    Embeddings panel.

    The points are stored as a FiftyOne brain visualization run under
    ``brain_key`` (``dataset.list_brain_runs()``, ``load_brain_results``,
    ``rename_brain_run`` and ``delete_brain_run`` work as for any brain
    run), ready to be coloured by a clustering run's field.

    Given a clustering ``run_key``, the run's embeddings field and samples
    (those of ``samples`` that have a cluster id) are projected, the brain
    key is added to the run's ``projection_keys``, and when the run has more
    than 100 clusters (the panel colours by at most 100 categories) a field
    ``<cluster_field>_top99`` is written, holding the ids of the 99 largest
    clusters and ``"other"`` for the rest; the run's config records it as
    ``color_field`` and among the ``fields`` the run owns. Nothing is written
    unless the whole computation succeeds.

    Args:
        samples: a FiftyOne dataset or view
        brain_key: a new brain key (a Python identifier)
        embeddings_field (None): the vector field to project; needed when
            no ``run_key`` is given
        run_key (None): a clustering run whose embeddings and samples to
            project
        method ("umap"): ``"umap"``, ``"pca"`` or ``"tsne"``; see
            :data:`core.projection.PROJECTIONS`
        skip_missing (False): whether to project only the samples that have
            an embedding, instead of failing when some have none
        progress (None): an optional ``progress(fraction, label)`` callable
        **params: the method's parameters as ``<method>__<param>`` (e.g.
            ``umap__n_neighbors=30``); those of other methods are ignored

    Returns:
        a summary dict: brain key, method and parameters, source field and
        run, number of samples, the field to colour by (or ``None``) and
        timings
    """
    import time

    from .core import projection as projection_

    t0 = time.perf_counter()
    check_new_brain_key(samples, brain_key)
    projector = projection_.PROJECTIONS.get(method)(**params)
    view, embeddings_field, run_config = _projection_source(
        samples, embeddings_field, run_key, skip_missing
    )
    n = view.count()
    if n == 0:
        raise InputError("The view is empty: there are no samples to project")
    projector.check_input(n, 2)
    if run_config is not None:
        _plan_color_field(samples, run_key, run_config)

    timings = {}
    report = _stage(progress, 0.0, 0.1, "reading")
    report(0.0)
    ids, X = read_vectors(view, embeddings_field, progress=report)
    projector.check_input(*X.shape)
    timings["read_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    Y = projector.fit_transform(
        X, progress=_stage(progress, 0.1, 0.9, "projecting")
    )
    del X
    timings["project_s"] = time.perf_counter() - t

    t = time.perf_counter()
    color_by = save_projection(
        view,
        brain_key,
        ids,
        Y,
        method,
        projector.params_,
        embeddings_field,
        run_key=run_key,
        progress=_stage(progress, 0.9, 1.0, "writing"),
    )
    timings["write_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    return dict(
        brain_key=brain_key,
        method=method,
        params=dict(projector.params_),
        embeddings_field=embeddings_field,
        run_key=run_key,
        n_samples=len(ids),
        color_by=color_by,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def check_new_brain_key(samples, brain_key):
    """Raises an :class:`InputError` if ``brain_key`` is invalid or taken
    on the collection's dataset."""
    dataset = samples._dataset
    if not isinstance(brain_key, str) or not brain_key.isidentifier():
        raise InputError(
            f"Brain key {brain_key!r} is not valid: use letters, digits and "
            "underscores, not starting with a digit"
        )
    if brain_key in dataset.list_brain_runs():
        raise InputError(
            f"Brain key '{brain_key}' is already taken on dataset "
            f"'{dataset.name}'; choose another, or delete or rename that "
            "brain run first"
        )


def save_projection(
    samples,
    brain_key,
    ids,
    points,
    method,
    params,
    embeddings_field,
    run_key=None,
    progress=None,
):
    """Stores computed 2-D points as a brain visualization run, and links
    them to a clustering run.

    This is the storing half of :func:`compute_projection`, for callers that
    computed the points themselves (e.g. with a neighbour graph shared with
    a clustering run). Either everything below is written or nothing is:

    -   the brain run ``brain_key`` over ``samples``, whose config records
        the projection ``method``, its ``params``, the embeddings field and
        the clustering run;
    -   for a ``run_key`` of more than 100 clusters, the run's colour field
        (see :func:`compute_projection`), recorded in the run's config;
    -   ``brain_key`` appended to the run's ``projection_keys``.

    Args:
        samples: the dataset or view the points belong to
        brain_key: a new brain key
        ids: the sample ids of the rows of ``points``, all in ``samples``
        points: an ``n x 2`` float32 array
        method: the projection method's name
        params: its parameters (JSON-serialisable)
        embeddings_field: the vector field that was projected
        run_key (None): a clustering run to link the projection to
        progress (None): an optional ``progress(fraction, label)`` callable

    Returns:
        the field to colour the points by (the run's cluster or colour
        field), or ``None`` without ``run_key``
    """
    import fiftyone.brain as fob

    check_new_brain_key(samples, brain_key)
    dataset = samples._dataset
    report = _stage(progress, 0.0, 1.0, "writing")
    report(0.0)
    config = color_field = None
    if run_key is not None:
        config = runs.get_config(samples, run_key)
        color_field = _plan_color_field(samples, run_key, config)
    if samples.count() != len(ids):
        samples = samples.exists(embeddings_field)
    points = dict(zip((str(i) for i in ids), points))

    written = []
    try:
        if color_field is not None:
            _write_color_field(samples, config, color_field)
            written.append(color_field)
            report(0.3)
        fob.compute_visualization(
            samples,
            points=points,
            brain_key=brain_key,
            progress=False,
            plugin=runs.PLUGIN,
            projection_method=method,
            projection_params=dict(params),
            source_embeddings_field=embeddings_field,
            clustering_run_key=run_key,
        )
        report(0.9, "saved points")
        if run_key is not None:
            _link_projection(samples, run_key, brain_key, color_field)
    except BaseException:
        if brain_key in dataset.list_brain_runs():
            dataset.delete_brain_run(brain_key)
        _unwind_color_field(samples, run_key, written)
        raise
    report(1.0)
    if config is None:
        return None
    return color_field or config["cluster_field"]


def list_projections(samples, run_key=None):
    """The brain keys of the projections this plugin computed, optionally
    only those linked to clustering run ``run_key``."""
    import fiftyone.brain as fob

    keys = samples._dataset.list_brain_runs(
        type=fob.Visualization, plugin=runs.PLUGIN
    )
    if run_key is None:
        return keys
    linked = runs.get_config(samples, run_key).get("projection_keys") or []
    return [k for k in linked if k in keys]


def top_cluster_values(labels, keep=_PANEL_MAX_CATEGORIES - 1):
    """Keeps the ``keep`` most frequent values of ``labels`` and replaces
    the others by ``"other"`` (``None`` stays ``None``).

    Args:
        labels: a sequence of cluster id strings (or ``None``)
        keep (99): how many values to keep; ties go to the smaller id

    Returns:
        a list aligned with ``labels``
    """
    values, counts = np.unique(
        np.array([v for v in labels if v is not None], dtype=str),
        return_counts=True,
    )
    order = sorted(
        range(len(values)),
        key=lambda i: (-counts[i], _cluster_sort_key(values[i])),
    )
    kept = {str(values[i]) for i in order[:keep]}
    return [v if v is None or v in kept else _OTHER_CLUSTERS for v in labels]


def _cluster_sort_key(value):
    try:
        return (0, int(value), "")
    except ValueError:
        return (1, 0, str(value))


def _stage(progress, lo, hi, label):
    """A ``progress(fraction, label=None)`` that maps onto ``[lo, hi]``."""

    def report(fraction, detail=None):
        if progress is not None:
            progress(lo + (hi - lo) * float(fraction), detail or label)

    return report


def _projection_source(samples, embeddings_field, run_key, skip_missing):
    """The view and field to project, and the clustering run's config."""
    from .data import vector_field_db_name

    config = None
    if run_key is not None:
        config = runs.get_config(samples, run_key)
        run_field = config["embeddings_field"]
        if embeddings_field is not None and embeddings_field != run_field:
            raise InputError(
                f"Clustering run '{run_key}' clustered '{run_field}', not "
                f"'{embeddings_field}': pass one of embeddings_field or "
                "run_key"
            )
        embeddings_field = run_field
        cluster_field = config["cluster_field"]
        if cluster_field not in samples._dataset.get_field_schema():
            raise InputError(
                f"The cluster field '{cluster_field}' of run '{run_key}' "
                "no longer exists; recompute the run"
            )
        samples = samples.exists(cluster_field)
    elif embeddings_field is None:
        raise InputError(
            "Nothing to project: pass embeddings_field (a vector field) or "
            "run_key (a clustering run)"
        )
    vector_field_db_name(samples, embeddings_field)
    if skip_missing:
        samples = samples.exists(embeddings_field)
    return samples, embeddings_field, config


def _plan_color_field(samples, run_key, config):
    """The name of the colour field a run needs (one of at most 100
    categories), or ``None`` if its clusters are no more than 100; raises
    an :class:`InputError` if that name is taken by another field."""
    results = runs.load_results(samples, run_key)
    if len(results.get("clusters") or {}) <= _PANEL_MAX_CATEGORIES:
        return None
    name = config.get("color_field") or (
        f"{config['cluster_field']}_top{_PANEL_MAX_CATEGORIES - 1}"
    )
    ensure_new_field(samples._dataset, name, owned=runs.owned_fields(config))
    return name


def _write_color_field(samples, config, color_field):
    """Writes the colour field of a run over every sample it clustered."""
    dataset = samples._dataset
    cluster_field = config["cluster_field"]
    ids, labels = dataset.exists(cluster_field).values(["_id", cluster_field])
    write_fields(
        dataset,
        ids,
        {color_field: top_cluster_values(labels)},
        {color_field: fo.StringField},
    )


def _link_projection(samples, run_key, brain_key, color_field):
    """Records a projection (and the colour field) in a clustering run."""
    config = runs.get_config(samples, run_key)
    keys = list(config.get("projection_keys") or [])
    updates = dict(projection_keys=keys + [brain_key])
    if color_field is not None:
        fields = list(config.get("fields") or [])
        if color_field not in fields:
            fields.append(color_field)
        updates.update(color_field=color_field, fields=fields)
    runs.update_config(samples, run_key, **updates)


def _unwind_color_field(samples, run_key, written):
    """After a failed projection: removes a colour field that no run
    records, and forgets a recorded one that is gone."""
    if not written:
        return
    config = runs.get_config(samples, run_key)
    field = written[0]
    if config.get("color_field") != field:
        remove_fields(samples._dataset, [field])
    elif field not in samples._dataset.get_field_schema():
        fields = [f for f in config.get("fields") or [] if f != field]
        runs.update_config(samples, run_key, color_field=None, fields=fields)
