"""Choosing a near-duplicate threshold by looking: the distribution of each
sample's similarity to its nearest neighbour, how many samples each
threshold would flag, a suggested threshold and example pairs near it.

Near duplicates show as a mode of nearest-neighbour similarities close to
1, apart from the bulk of the samples. The histogram is taken over
``log10(1 - similarity)`` (0.9, 0.99, 0.999 equally spaced), where that mode
is visible, and the suggested threshold is the middle of the deepest valley
above the bulk (the bin of the median sample), the first of the deepest
where there are several (edited copies may form a mode of their own below
the exact ones).
"""

import numpy as np

# Similarities above 1 - 10**LOG_MIN count as exact (the histogram's last
# bin)
LOG_MIN = -4.0
BINS_PER_DECADE = 10
# The thresholds whose counts are shown
GRID = (0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995)
# The threshold suggested where the histogram shows no separate mode
FALLBACK = 0.95


def _log_distance(sim):
    return np.log10(np.clip(1.0 - sim.astype(np.float64), 10**LOG_MIN, 1.0))


def histogram(sim):
    """Counts of ``sim`` in bins equally spaced in ``log10(1 - sim)``, from
    the least similar to the most: ``(lo, hi, counts)`` as similarities
    (the first bin takes everything below 0.9's decade's lower end, 0)."""
    n_bins = int(-LOG_MIN * BINS_PER_DECADE)
    edges = np.linspace(0.0, LOG_MIN, n_bins + 1)  # log distance, falling
    x = _log_distance(sim)
    idx = np.clip(((0.0 - x) * BINS_PER_DECADE).astype(int), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    lo = 1.0 - 10.0 ** edges[:-1]
    hi = 1.0 - 10.0 ** edges[1:]
    lo[0] = -1.0
    hi[-1] = 1.0
    return lo, hi, counts


def suggest(sim):
    """A threshold in the middle of the deepest valley between the bulk of
    the nearest-neighbour similarities ``sim`` and their mode closest to
    1; :data:`FALLBACK` where there is no such valley.

    Returns:
        ``(threshold, found)``: a similarity, and whether a valley was
        found
    """
    lo, hi, counts = histogram(sim)
    h = np.convolve(counts.astype(float), [0.25, 0.5, 0.25], mode="same")
    # the bulk: the bin of the median (fewer than half are duplicates)
    x = _log_distance(np.array([np.median(sim)]))[0]
    bulk = int(np.clip(-x * BINS_PER_DECADE, 0, len(h) - 1))
    depth = np.zeros(len(h))
    for j in range(bulk + 1, len(h) - 1):
        depth[j] = min(h[bulk : j + 1].max(), h[j:].max()) - h[j]
    # the valley closest to the bulk among the deepest (within a fifth):
    # a mode of edited copies may lie between the bulk and exact copies
    deep = np.flatnonzero(depth >= 0.8 * depth.max()) if depth.max() else []
    best = int(deep[0]) if len(deep) else None
    # a valley needs samples beyond it: at least two raw counts
    if best is None or counts[best:].sum() - counts[best] < 2:
        return FALLBACK, False
    run = [best]
    floor = h[best] + 1e-9
    while run[0] - 1 > bulk and h[run[0] - 1] <= floor:
        run.insert(0, run[0] - 1)
    while run[-1] + 1 < len(h) - 1 and h[run[-1] + 1] <= floor:
        run.append(run[-1] + 1)
    a, b = run[0], run[-1]
    # the middle of the run, in log distance
    x = -(a + b + 1) / (2.0 * BINS_PER_DECADE)
    return float(round(1.0 - 10.0**x, 6)), True


def examples(sim, nn, threshold, rows=None, n_each=3):
    """Pairs ``(row, its nearest row, similarity)`` closest to
    ``threshold``: up to ``n_each`` at or above it (lowest first) and up
    to ``n_each`` below it (highest first), each pair once."""
    rows = np.arange(len(sim)) if rows is None else rows
    order = np.argsort(sim, kind="stable")
    above = [i for i in order if sim[i] >= threshold]
    below = [i for i in order[::-1] if sim[i] < threshold and nn[i] >= 0]

    def pick(candidates):
        seen, out = set(), []
        for i in candidates:
            a, b = int(rows[i]), int(nn[i])
            if (min(a, b), max(a, b)) in seen:
                continue
            seen.add((min(a, b), max(a, b)))
            out.append((a, b, float(sim[i])))
            if len(out) == n_each:
                break
        return out

    return pick(above), pick(below)


def preview(searcher, progress=None, floor=None, max_pairs=None):
    """What the threshold form shows, for the rows of a
    :class:`.duplicates.Searcher`.

    Returns:
        a dict: ``n`` (rows), ``nn`` and ``sim`` (each row's nearest row
        and their similarity; approximate beyond
        :data:`.duplicates.EXACT_MAX` rows for rows without near
        duplicates), ``histogram`` (``lo``, ``hi``, ``count`` lists),
        ``counts`` (``[threshold, samples at or above it]``),
        ``suggested`` and ``found`` (see :func:`suggest`), and example
        pairs ``above`` and ``below`` it; with ``floor``, ``pairs``: the
        pairs at or above it (see :meth:`.duplicates.Searcher.scan`;
        ``None`` beyond ``max_pairs``)
    """
    pairs = None
    if floor is None:
        nn, sim = searcher.nearest(progress)
    else:
        nn, sim, pairs = searcher.scan(floor, progress, max_pairs)
    threshold, found = suggest(sim)
    # the suggestion, and the grid's thresholds that read differently
    grid = [t for t in GRID if abs(t - threshold) >= 5e-4]
    grid = sorted(set(grid) | {threshold})
    counts = [[t, int((sim >= t).sum())] for t in grid]
    lo, hi, hist = histogram(sim)
    above, below = examples(sim, nn, threshold)
    return dict(
        n=len(sim),
        nn=nn,
        sim=sim,
        histogram=dict(
            lo=[round(float(v), 6) for v in lo],
            hi=[round(float(v), 6) for v in hi],
            count=[int(c) for c in hist],
        ),
        counts=counts,
        suggested=threshold,
        found=found,
        above=above,
        below=below,
        pairs=pairs,
    )
