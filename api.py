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

        def report(fraction):
            if self.progress is not None:
                self.progress(lo + (hi - lo) * fraction, stage)

        report(0.0)
        return report


def _default_reduce(method_cls, reduce):
    if reduce == "auto":
        return "umap" if method_cls.density_based else "none"
    if reduce != "none":
        reduce_.REDUCERS.get(reduce)
    return reduce


def compute_clusters(
    samples,
    run_key,
    embeddings_field,
    method="hdbscan",
    cluster_field=None,
    normalize=True,
    reduce="auto",
    skip_missing=False,
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
            (UMAP to 10 dimensions for density-based methods, else none)
        skip_missing (False): whether to cluster only the samples that have
            an embedding, instead of failing when some have none
        progress (None): an optional ``progress(fraction, stage)`` callable
        **params: method and reduction parameters as ``<method>__<param>``
            and ``<reduce>__<param>`` (e.g. ``kmeans__n_clusters=10``,
            ``umap__n_components=5``)

    Returns:
        a summary dict: run key, fields, number of samples and clusters,
        cluster sizes, metrics and timings
    """
    import time

    t0 = time.perf_counter()
    dataset = samples._dataset
    method_cls = methods.METHODS.get(method)
    reduce_name = _default_reduce(method_cls, reduce)
    method_params, reduce_params = schema.split_params(
        params,
        (methods.METHODS, method),
        (reduce_.REDUCERS, None if reduce_name == "none" else reduce_name),
    )
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

    stage = _Stages(
        progress, {"reading": 2, "reducing": 4, "clustering": 4, "writing": 2}
    )
    timings = {}

    report = stage("reading")
    ids, X = read_vectors(samples, embeddings_field, skip_missing, report)
    timings["read_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    report = stage("reducing")
    Z = reduce_.preprocess(X, normalize, reduce_name, reduce_params)
    timings["reduce_s"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("clustering")
    k_curve = None
    if method_cls.k_param and method_params[method_cls.k_param] is None:
        k, k_curve = methods.choose_k(method, method_params, Z)
        method_params[method_cls.k_param] = k
        logger.info("Chose k=%d by silhouette", k)
    model = method_cls(**method_params).fit(Z)
    labels = model.labels_
    timings["cluster_s"] = time.perf_counter() - t

    t = time.perf_counter()
    summary = _summarize(X, Z, labels, model, score_kind, ids)
    scores = summary.pop("scores")
    timings["summarize_s"] = time.perf_counter() - t

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
    except BaseException:
        remove_fields(dataset, fields)
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
        timings={k: round(v, 3) for k, v in timings.items()},
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
    clusters = {}
    for cid, size in zip(cluster_ids.tolist(), counts.tolist()):
        members = scores[labels == cid]
        members = members[~np.isnan(members)]
        centroid = centroid_of.get(cid)
        clusters[str(cid)] = dict(
            size=int(size),
            centroid=None if centroid is None else centroid.tolist(),
            representatives=[str(ids[i]) for i in typical[cid]],
            score_mean=float(members.mean()) if len(members) else None,
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
    est = _label_estimate(
        results, todo, images_per_cluster, detail, context
    )
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
    field_ready = (
        label_field in schema and label_field == config.get("label_field")
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
        labeling.Job(
            cid, [path_of[i] for i in shown[cid]], list(shown[cid])
        )
        for cid in todo
    ]
