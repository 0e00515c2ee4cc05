"""Progress reporting and timing, shared by every long computation.

A progress callback is ``progress(fraction, label=None)`` with ``fraction``
in ``[0, 1]``. The helpers here map the progress of a part onto its share of
a whole (:func:`span`), run a computation as named, timed stages that share
one scale (:class:`Stages`), and count items with a rate
(:class:`ItemProgress`).
"""

import contextlib
import logging
import time

logger = logging.getLogger(__name__)


def report(progress, fraction, label=None):
    """Calls ``progress(fraction, label)`` with ``fraction`` clamped to
    ``[0, 1]``; does nothing when ``progress`` is ``None``."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), label)


def span(progress, lo, hi, label=None):
    """A progress callback mapping ``[0, 1]`` onto ``[lo, hi]`` of
    ``progress``.

    Args:
        progress: a progress callback, or ``None``
        lo: where the part starts on the whole's scale
        hi: where it ends
        label (None): the label reported when the part gives none

    Returns:
        a ``progress(fraction, label=None)`` callable (which does nothing
        when ``progress`` is ``None``)
    """

    def sub(fraction, detail=None):
        fraction = min(max(float(fraction), 0.0), 1.0)
        report(progress, lo + (hi - lo) * fraction, detail or label)

    return sub


class Stages:
    """The successive stages of one computation.

    Each stage gets a share of one progress scale proportional to its
    weight, is logged when it starts, and is timed. Stages without a weight
    are timed only.

    Args:
        progress (None): a progress callback, or ``None``
        weights (None): a dict ``stage name -> weight``, in order

    Example::

        stages = Stages(progress, {"reading": 1, "fitting": 3})
        with stages("reading") as report:
            X = read(progress=report)
        stages.timings()  # {"reading_s": ..., "total_s": ...}
    """

    def __init__(self, progress=None, weights=None):
        self.progress = progress
        self.start = time.perf_counter()
        self.bounds = {}
        self._timings = {}
        weights = weights or {}
        total = float(sum(weights.values())) or 1.0
        lo = 0.0
        for name, w in weights.items():
            self.bounds[name] = (lo, lo + w / total)
            lo += w / total

    @contextlib.contextmanager
    def __call__(self, name, timing=None):
        """Runs a stage: yields its progress callback and records its time
        under ``timing`` (default ``name``) + ``"_s"``."""
        t = time.perf_counter()
        if name in self.bounds:
            logger.info("%s...", name.capitalize())
            sub = span(self.progress, *self.bounds[name], label=name)
            sub(0.0)
        else:
            sub = span(None, 0, 1)
        try:
            yield sub
        finally:
            key = f"{timing or name}_s"
            elapsed = time.perf_counter() - t
            self._timings[key] = self._timings.get(key, 0.0) + elapsed

    def done(self):
        """Reports the end of the whole computation."""
        report(self.progress, 1.0, "done")

    def timings(self):
        """The time of each stage so far and the total, in seconds."""
        out = {k: round(v, 3) for k, v in self._timings.items()}
        out["total_s"] = round(time.perf_counter() - self.start, 3)
        return out


class ItemProgress:
    """Counts finished items and reports them with a rate, to a progress
    callback and, every ``log_every`` seconds, to the log.

    Args:
        total: the number of items
        progress (None): a progress callback, or ``None``
        unit ("images"): what the items are, for labels
        log_every (15.0): seconds between two log lines
    """

    def __init__(self, total, progress=None, unit="images", log_every=15.0):
        self.total = total
        self.progress = progress
        self.unit = unit
        self.log_every = log_every
        self.start = time.perf_counter()
        self.last_log = self.start
        self.done = 0

    def rate(self):
        """Items per second so far."""
        dt = time.perf_counter() - self.start
        return self.done / dt if dt > 0 else 0.0

    def label(self):
        return (
            f"{self.done:,}/{self.total:,} {self.unit}, "
            f"{self.rate():.1f} {self.unit}/s"
        )

    def update(self, n):
        """Adds ``n`` finished items."""
        self.set(self.done + n)

    def set(self, done):
        """Sets the number of finished items."""
        self.done = done
        label = self.label()
        report(self.progress, self.done / max(1, self.total), label)
        now = time.perf_counter()
        if now - self.last_log >= self.log_every:
            self.last_log = now
            logger.info("Done %s", label)
