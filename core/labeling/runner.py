"""Labelling many clusters at once: one request per cluster, several in
flight, each outcome reported as soon as it is known."""

import concurrent.futures
import dataclasses
import logging
import threading

from .answers import build_prompt, shorten
from .client import FatalLabelError, LabelError
from .images import THUMBNAIL_SIZE, make_thumbnail

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Job:
    """One cluster to name.

    Attributes:
        cluster_id: the cluster's id
        paths: the image files to show
        shown_ids: the ids of the samples shown, aligned with ``paths``
    """

    cluster_id: str
    paths: list
    shown_ids: list


@dataclasses.dataclass
class Outcome:
    """What became of one cluster.

    Attributes:
        cluster_id: the cluster's id
        label: a :class:`ClusterLabel`, or ``None`` on failure
        error: why it failed, or ``None``
        shown_ids: the ids of the samples whose images were sent
    """

    cluster_id: str
    label: object = None
    error: str = None
    shown_ids: list = dataclasses.field(default_factory=list)


def _run_job(job, labeler, context, thumbnail_size, slots):
    """Makes a job's thumbnails, then sends it once a request slot is
    free."""
    images = []
    shown = []
    errors = []
    for path, _id in zip(job.paths, job.shown_ids):
        try:
            images.append(make_thumbnail(path, thumbnail_size))
            shown.append(_id)
        except Exception as e:  # unreadable file: show the others
            errors.append(f"{path}: {shorten(e, 120)}")
    if errors:
        logger.warning(
            "Cluster %s: %d of %d images could not be read (%s)",
            job.cluster_id,
            len(errors),
            len(job.paths),
            errors[0],
        )
    if not images:
        first = errors[0] if errors else "no image"
        raise LabelError(f"none of its images could be read ({first})")
    with slots:
        label = labeler.label(images, build_prompt(len(images), context))
    return label, shown


class _Requests:
    """The worker threads of one labelling run, as a context manager.

    Twice as many workers as request slots: while requests are in flight,
    the next jobs' thumbnails are made, so a slot that frees up is used at
    once. Leaving normally waits for the workers; leaving on an error or an
    interrupt cancels the retries waiting in the labeler and the jobs not
    started, without waiting.
    """

    def __init__(self, labeler, max_concurrency, n_jobs):
        self.labeler = labeler
        self.slots = threading.BoundedSemaphore(max_concurrency)
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(2 * max_concurrency, max(1, n_jobs)),
            thread_name_prefix="label",
        )

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        failed = exc_type is not None
        if failed:
            self.labeler.cancel()
        self.pool.shutdown(wait=not failed, cancel_futures=failed)
        return False

    def submit(self, jobs, context, thumbnail_size):
        """Starts every job; returns ``{future: job}``."""
        return {
            self.pool.submit(
                _run_job,
                job,
                self.labeler,
                context,
                thumbnail_size,
                self.slots,
            ): job
            for job in jobs
        }


class _Collector:
    """Turns finished jobs into :class:`Outcome` s, reports each as it
    comes, and stops the jobs not yet sent after a fatal error."""

    def __init__(self, labeler, total, on_outcome, progress):
        self.labeler = labeler
        self.total = total
        self.on_outcome = on_outcome
        self.progress = progress
        self.outcomes = []
        self.fatal = None

    def collect(self, futures):
        """Reports every job of ``{future: job}``, in completion order,
        then those a fatal error cancelled."""
        for future in concurrent.futures.as_completed(futures):
            if not future.cancelled():
                job = futures[future]
                self._report(self._outcome(future, job, futures))
        for future, job in futures.items():
            if future.cancelled():
                error = f"not sent: {self.fatal}"
                self._report(Outcome(job.cluster_id, error=error))

    def _outcome(self, future, job, futures):
        cid = job.cluster_id
        try:
            label, shown = future.result()
        except FatalLabelError as e:
            if self.fatal is None:
                self.fatal = e
                self.labeler.cancel()
                for f in futures:
                    f.cancel()
            return Outcome(cid, error=str(e))
        except LabelError as e:
            error = str(e)
            if self.fatal is not None and error == "cancelled":
                error = f"not sent: {self.fatal}"
            return Outcome(cid, error=error)
        except Exception as e:
            logger.exception("Labelling cluster %s", cid)
            error = f"{type(e).__name__}: {shorten(e, 200)}"
            return Outcome(cid, error=error)
        return Outcome(cid, label, shown_ids=shown)

    def _report(self, outcome):
        self.outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        if self.progress is not None:
            n = len(self.outcomes)
            self.progress(
                n / self.total, f"Labelled {n} of {self.total} clusters"
            )


def label_clusters(
    jobs,
    labeler,
    context=None,
    max_concurrency=8,
    on_outcome=None,
    progress=None,
    thumbnail_size=THUMBNAIL_SIZE,
):
    """Names clusters concurrently.

    Each job's images are turned into thumbnails and sent in one request;
    up to ``max_concurrency`` requests are in flight at once, while the
    thumbnails of the next jobs are being made. As each
    cluster finishes, ``on_outcome(outcome)`` is called in the calling
    thread, so labels can be stored while the others are still running.

    A cluster whose request keeps failing gets an :class:`Outcome` with the
    reason and the others go on. A :class:`FatalLabelError` (e.g. a
    rejected key) stops the clusters not yet sent; they are reported as
    failed with that reason and the error is re-raised after every
    finished cluster has been reported.

    Args:
        jobs: an iterable of :class:`Job`
        labeler: a :class:`Labeler`
        context (None): optional words about the dataset for the prompt
        max_concurrency (8): the most requests in flight at once
        on_outcome (None): a callable ``on_outcome(outcome)``
        progress (None): a callable ``progress(fraction, label)``
        thumbnail_size (512): the longest side of the images sent

    Returns:
        a list of :class:`Outcome`, one per job, in completion order

    Raises:
        FatalLabelError: if labelling had to stop
    """
    jobs = list(jobs)
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    collector = _Collector(labeler, len(jobs), on_outcome, progress)
    with _Requests(labeler, max_concurrency, len(jobs)) as requests:
        futures = requests.submit(jobs, context, thumbnail_size)
        collector.collect(futures)
    if collector.fatal is not None:
        raise collector.fatal
    return collector.outcomes
