"""The number of CPU threads a model runs with, chosen by timing it.

:func:`thread_tuner` makes a :class:`ThreadTuner` for a run of the
embedding loop (see :mod:`.embed_loop`) on a CPU.
"""

import collections
import time


class ThreadTuner:
    """Chooses torch's intra-op thread count on a CPU by timing the model.

    All cores are fastest on an idle machine, but a decoding worker or any
    other busy process makes the model's OpenMP threads wait for each
    other, and then fewer threads run faster (on a shared 2-core machine,
    one thread ran twice as fast as two). The model starts with one thread
    per core not taken by a decoding worker. Now and then, the end of a
    batch runs as paired probes: ``probe`` images with the current count,
    then ``probe`` images with each other count (the end of a batch, when
    the workers have refilled their queue; equal sizes, so the comparison
    is fair). A count that is 15% faster than the current one on the median
    of its last probes (or 30% faster on the first) takes over. The first
    batch is probed already (its one-off setup costs fall on the part run
    before the probes; the first probe of each other count only warms it
    up). Probes are repeated less and less often while nothing changes. The
    previous count is restored at the end.

    Args:
        base: the thread count to start with
        others: other thread counts to try
        probe (2): images per probe
        every (20): batches between probes once the first two are done;
            doubles each time nothing changes, up to 640
    """

    def __init__(self, base, others, probe=2, every=20):
        import torch

        self.torch = torch
        self.original = torch.get_num_threads()
        self.best = base
        self.probe = probe
        self.every = every
        self.first_every = every
        self.counts = sorted(set(others) | {base})
        self.ratios = {c: collections.deque(maxlen=3) for c in self.counts}
        self.ms = {}
        # Thread counts run once: the first run of a count sets up its
        # kernels (oneDNN's, in bfloat16) and is not timed fairly
        self.warm = {base}
        self.batches = 0
        self.next_probe = 1
        self.current = None

    def _use(self, n):
        if n != self.current:
            self.torch.set_num_threads(n)
            self.current = n

    def _timed(self, forward, batch, n):
        self._use(n)
        start = time.perf_counter()
        out = forward(batch)
        seconds = (time.perf_counter() - start) / len(batch)
        self.ms[n] = 1000 * seconds
        return out, seconds

    def run(self, forward, batch):
        """Returns ``forward(batch)``, probing thread counts on the way."""
        self.batches += 1
        others = [c for c in self.counts if c != self.best]
        k = self.probe
        if (
            self.batches < self.next_probe
            or len(batch) < k * (len(others) + 1) + 1
        ):
            self._use(self.best)
            return forward(batch)

        split = len(batch) - k * (len(others) + 1)
        self._use(self.best)
        outs = [forward(batch[:split])]
        out, base = self._timed(forward, batch[split : split + k], self.best)
        outs.append(out)
        for i, n in enumerate(others):
            start = split + k * (i + 1)
            out, seconds = self._timed(forward, batch[start : start + k], n)
            outs.append(out)
            if n in self.warm:
                self.ratios[n].append(seconds / base)
            self.warm.add(n)
        self._use(self.best)
        self._decide(others)
        return self.torch.cat(outs)

    def _decide(self, others):
        if not all(self.ratios[n] for n in others):
            self.next_probe = self.batches + 1
            return
        median = {
            n: sorted(self.ratios[n])[len(self.ratios[n]) // 2] for n in others
        }
        fastest = min(median, key=median.get)
        n_probes = len(self.ratios[fastest])
        if median[fastest] < (0.85 if n_probes >= 2 else 0.7):
            self.best = fastest
            self.ratios = {c: collections.deque(maxlen=3) for c in self.counts}
            self.every = self.first_every
            self.next_probe = self.batches + 1  # confirm soon
            return
        if all(len(self.ratios[n]) >= 2 for n in others):
            self.next_probe = self.batches + self.every
            self.every = min(640, 2 * self.every)
        else:
            self.next_probe = self.batches + 1

    def restore(self):
        self.torch.set_num_threads(self.original)

    def summary(self):
        timed = ", ".join(
            f"{c}: {self.ms[c]:.0f} ms/image"
            for c in self.counts
            if c in self.ms
        )
        return f"{self.best} CPU threads (last probes {timed})"


def thread_tuner(num_workers):
    """A :class:`ThreadTuner` that starts with one thread per core not
    taken by a decoding worker and also tries all of torch's threads and
    half of them; ``None`` when there is nothing to choose."""
    import torch

    n = torch.get_num_threads()
    base = max(1, n - num_workers)
    others = {n, max(1, n // 2)} - {base}
    return ThreadTuner(base, others) if others else None
