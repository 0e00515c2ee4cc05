"""Cluster labels from a multimodal LLM: which images each cluster shows,
what it costs, and labels saved into a field the run owns as they arrive.

:func:`label_clusters` runs in stages: check the options against
:data:`core.labeling.OPTIONS`, plan (which clusters, which field, the
cost: :mod:`._label_plan`), pick the images of each cluster, send them,
save labels as they arrive (:class:`_LabelSaver`), and summarise."""

import logging
import os
import time

import fiftyone as fo

from .. import runs
from ..core import labeling
from ..core.progress import report
from ..core.schema import ParamError
from ..data import InputError, set_values_by_group
from ._label_plan import estimate_cost, label_jobs, plan_labelling

logger = logging.getLogger(__name__)

# Seconds between two saves of labels while a labelling run goes on
_LABEL_FLUSH_EVERY = 1.0


def _check_options(values):
    """``values`` validated by :data:`core.labeling.OPTIONS` (defaults for
    those missing).

    Raises:
        InputError: naming the first option that is not valid
    """
    try:
        return labeling.OPTIONS.validate(values)
    except ParamError as e:
        raise InputError(str(e)) from None


def _check_api_key(api_key, labeler):
    """The API key to use: ``api_key``, else ``OPENAI_API_KEY``; ``None``
    when a ``labeler`` is given."""
    if labeler is not None:
        return None
    api_key = api_key or os.environ.get("OPENAI_API_KEY")
    if api_key is not None and not isinstance(api_key, str):
        raise InputError("api_key must be a string")
    if api_key and not api_key.strip():
        raise InputError(
            "The API key is blank (only spaces): set OPENAI_API_KEY (in "
            "the App: the plugin secret) to the key itself"
        )
    if not api_key:
        raise InputError(
            "No API key for the LLM server: set the OPENAI_API_KEY "
            "environment variable (in the App: the plugin secret "
            "OPENAI_API_KEY), or pass api_key=. Local servers that need "
            "no key accept any placeholder value"
        )
    return api_key


def _image_dataset(samples):
    dataset = samples._dataset
    if dataset.media_type != "image":
        raise InputError(
            f"Dataset '{dataset.name}' holds {dataset.media_type} samples; "
            "cluster labelling shows images and needs an image dataset"
        )
    return dataset


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
    plan = plan_labelling(
        samples, run_key, max_clusters, cluster_ids, overwrite, label_field
    )
    est = estimate_cost(plan, images_per_cluster, detail, context)
    return dict(
        est,
        clusters=plan.todo,
        already_labelled=plan.done,
        label_field=plan.label_field,
    )


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
    t0 = time.perf_counter()
    opts = _check_options(
        dict(
            model=model,
            base_url=base_url,
            images_per_cluster=images_per_cluster,
            selection=selection,
            seed=seed,
            context=context,
            max_clusters=max_clusters,
            overwrite=overwrite,
            label_field=label_field,
            detail=detail,
            max_concurrency=max_concurrency,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
        )
    )
    api_key = _check_api_key(api_key, labeler)
    dataset = _image_dataset(samples)
    plan, est = _plan_and_cost(samples, run_key, cluster_ids, opts)
    jobs = label_jobs(dataset, plan, opts)
    if labeler is None:
        labeler = _openai_labeler(api_key, opts)
    saver = _LabelSaver(samples, run_key, plan, labeler.model or model)
    _send(jobs, labeler, opts, saver, est, progress)
    summary = _summary(run_key, plan, saver, labeler, jobs, est, t0)
    report(progress, 1.0, "done")
    return summary


def _plan_and_cost(samples, run_key, cluster_ids, opts):
    """The :class:`._label_plan.LabelPlan` of a run and its estimated
    cost."""
    plan = plan_labelling(
        samples,
        run_key,
        opts["max_clusters"],
        cluster_ids,
        opts["overwrite"],
        opts["label_field"],
    )
    est = estimate_cost(
        plan, opts["images_per_cluster"], opts["detail"], opts["context"]
    )
    return plan, est


def _openai_labeler(api_key, opts):
    return labeling.OpenAILabeler(
        api_key,
        model=opts["model"],
        base_url=opts["base_url"],
        timeout=opts["timeout"],
        max_retries=opts["max_retries"],
        backoff_base=opts["backoff_base"],
        detail=opts["detail"],
    )


def _send(jobs, labeler, opts, saver, est, progress):
    """Sends every job; labels are saved as they arrive, and what arrived
    is saved even when the run stops early."""
    logger.info(
        "Labelling %d clusters of run '%s' with %s (%d images)",
        len(jobs),
        saver.run_key,
        saver.model,
        est["images"],
    )
    try:
        labeling.label_clusters(
            jobs,
            labeler,
            context=opts["context"],
            max_concurrency=opts["max_concurrency"],
            on_outcome=saver.on_outcome,
            progress=progress,
        )
    finally:
        saver.flush()
        close = getattr(labeler, "close", None)
        if close is not None:
            close()


def _summary(run_key, plan, saver, labeler, jobs, est, t0):
    if saver.failed:
        logger.warning(
            "%d of %d clusters could not be labelled",
            len(saver.failed),
            len(plan.todo),
        )
    return dict(
        run_key=run_key,
        label_field=plan.label_field,
        model=saver.model,
        labelled=saver.labelled,
        failed=saver.failed,
        already_labelled=plan.done,
        requests=getattr(labeler, "n_requests", len(jobs)),
        usage=dict(getattr(labeler, "usage", {}) or {}),
        estimate=est,
        elapsed_s=round(time.perf_counter() - t0, 3),
    )


class _LabelSaver:
    """Saves the labels of a run as they arrive.

    It owns the labels not yet written, creates the label field at the
    first write (and records it as the run's), and writes them and the
    run's results at most once per :data:`_LABEL_FLUSH_EVERY` seconds, and
    once more at the end, so an interrupted run keeps what it received.

    Args:
        samples: the dataset or view labelled
        run_key: the clustering run key
        plan: the :class:`_Plan` of the run
        model: the model name stored with each label

    Attributes:
        labelled: ``{cluster id: {"label", "description"}}`` so far
        failed: ``{cluster id: reason}`` so far
    """

    def __init__(self, samples, run_key, plan, model):
        self.samples = samples
        self.run_key = run_key
        self.dataset = samples._dataset
        self.config = plan.config
        self.results = plan.results
        self.clusters = plan.results["clusters"]
        self.field = plan.label_field
        self.model = model
        self.labelled = {}
        self.failed = {}
        self._dirty = False
        self._last = time.monotonic()
        self._field_ready = self.field in self.dataset.get_field_schema()
        self._field_ready &= self.field == self.config.get("label_field")
        # Labels of clusters labelled earlier go into a field that is new
        self._pending = {}
        if not self._field_ready:
            self._pending = {
                c: v["label"]
                for c, v in self.clusters.items()
                if c not in plan.todo and v.get("label")
            }

    def on_outcome(self, outcome):
        """Records one cluster's :class:`core.labeling.Outcome`; saves when
        the last save is old enough."""
        cid = outcome.cluster_id
        if outcome.label is None:
            self.failed[cid] = outcome.error
            logger.warning("Cluster %s not labelled: %s", cid, outcome.error)
        else:
            name = outcome.label.name
            description = outcome.label.description
            self.clusters[cid].update(
                label=name,
                description=description,
                label_model=self.model,
                shown_ids=[str(i) for i in outcome.shown_ids],
            )
            self.labelled[cid] = dict(label=name, description=description)
            self._pending[cid] = name
            self._dirty = True
        if time.monotonic() - self._last >= _LABEL_FLUSH_EVERY:
            self.flush()

    def flush(self):
        """Writes the pending labels and the run's results."""
        if self._pending:
            if not self._field_ready:
                self._create_field()
            set_values_by_group(
                self.dataset,
                self.config["cluster_field"],
                self._pending,
                self.field,
            )
            self._pending.clear()
        if self._dirty:
            runs.save_results(self.samples, self.run_key, self.results)
            self._dirty = False
        self._last = time.monotonic()

    def _create_field(self):
        """Adds the label field and makes it one the run owns."""
        if self.field not in self.dataset.get_field_schema():
            self.dataset.add_sample_field(self.field, fo.StringField)
        fields = list(self.config.get("fields", []))
        if self.field not in fields:
            fields.append(self.field)
        runs.update_config(
            self.samples, self.run_key, label_field=self.field, fields=fields
        )
        self.config["fields"] = fields
        self.config["label_field"] = self.field
        self._field_ready = True
