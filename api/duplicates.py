"""Near-duplicate groups and exact duplicates, as runs of their own
(``kind="duplicates"``), and the preview that helps choose the threshold.

A duplicates run ``dup_key`` writes ``<dup_key>_group`` (a group id, an
int from 0, largest group first; ``None`` for samples with no duplicate)
and ``<dup_key>_keep`` (``True`` for the one sample kept per group,
``False`` for the others, ``None`` outside groups), saves the view
``"<dup_key> not kept"`` and stores its config and summary as a FiftyOne
run that is listed, renamed and deleted like clustering runs.
"""

import logging

import numpy as np

import fiftyone as fo
from fiftyone import ViewField as F

from .. import claims, runs
from ..core import duplicates as dups
from ..core.dup_threshold import preview as _preview
from ..core.progress import Stages, span
from ..data import (
    InputError,
    Rollback,
    check_sample_collection,
    ensure_new_field,
    read_vectors,
    remove_fields,
    write_fields,
)

__all__ = [
    "delete_duplicates_run",
    "duplicate_groups_view",
    "duplicate_threshold_preview",
    "duplicates_per_cluster",
    "find_duplicates",
    "get_duplicates_run_info",
    "list_duplicates_runs",
    "rename_duplicates_run",
]

logger = logging.getLogger(__name__)

KIND = "duplicates"
KEEP_CHOICES = ("typical", "largest")
# With a suggested threshold, the pairs above this similarity are kept from
# the neighbour pass (a second pass only for a suggestion below it)
FLOOR = 0.8

# Previews of the last few requests (the App resolves a form many times)
_PREVIEWS = {}
_PREVIEWS_MAX = 4


def duplicate_fields(dup_key):
    """``(group field, keep field)`` of a duplicates run."""
    return f"{dup_key}_group", f"{dup_key}_keep"


def not_kept_view_name(dup_key):
    return f"{dup_key} not kept"


def check_threshold(threshold):
    """Raises an :class:`InputError` unless ``threshold`` is ``None`` (the
    suggested one) or a number in (0, 1]; returns it as a float."""
    if threshold is None or threshold == "":
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InputError(
            f"threshold must be a cosine similarity in (0, 1], not "
            f"{threshold!r}"
        )
    if not 0.0 < float(threshold) <= 1.0:
        raise InputError(
            f"threshold={threshold} is out of range: a cosine similarity "
            "in (0, 1] (1 only finds identical embeddings); leave it "
            "empty for the suggested one"
        )
    return float(threshold)


def _run_clusters(samples, run_key):
    """The cluster of each sample of the view in clustering run
    ``run_key``, checking that the run covers the whole view."""
    config = runs.get_config(samples, run_key)
    field = runs.cluster_field(samples, run_key, config)
    n = samples.count()
    have = samples.exists(field).count()
    if have < n:
        raise InputError(
            f"{n - have:,} of the {n:,} samples of this view are not in "
            f"clustering run '{run_key}' (it was computed on another "
            "view): run without run_key, or on the run's samples"
        )
    return field


def _read(samples, embeddings_field, run_key, progress=None):
    """``(ids, U, within, paths)``: the samples' ids, their embeddings as
    unit rows, their cluster (with ``run_key``) and their file paths."""
    check_sample_collection(samples, "find_duplicates")
    cluster_field = _run_clusters(samples, run_key) if run_key else None
    ids, X = read_vectors(
        samples, embeddings_field, skip_missing=False, progress=progress
    )
    if len(ids) < 2:
        raise InputError("Finding duplicates needs at least two samples")
    fields = ["_id", "filepath"] + ([cluster_field] if run_key else [])
    values = samples.values(fields)
    by_id = {v[0]: v[1:] for v in zip(*values)}
    paths = [by_id[i][0] for i in ids]
    within = None
    if run_key:
        within = np.array([int(by_id[i][1]) for i in ids], dtype=np.int64)
    return ids, dups.unit_vectors(X), within, paths


def duplicate_threshold_preview(
    samples, embeddings_field, run_key=None, progress=None
):
    """How each threshold would flag the samples: the histogram of each
    sample's similarity to its nearest neighbour, the number of samples
    with a neighbour at or above each threshold, a suggested threshold
    and example pairs just above and below it.

    Args:
        samples: a dataset or view
        embeddings_field: a vector field
        run_key (None): a clustering run: only neighbours in the same
            cluster count
        progress (None): an optional ``progress(fraction, stage)``

    Returns:
        a JSON-ready dict: ``n_samples``, ``histogram`` (``lo``, ``hi``,
        ``count``: similarity bins, equally spaced in
        ``log10(1 - similarity)``), ``counts`` (``[threshold, samples]``),
        ``suggested``, ``found`` (whether the histogram shows a separate
        mode of near duplicates; else a default is suggested) and
        ``examples`` (``above`` and ``below``: pairs with ``ids``,
        ``filepaths`` and ``similarity``)
    """
    key = _preview_key(samples, embeddings_field, run_key)
    if key in _PREVIEWS:
        return _PREVIEWS[key]
    ids, U, within, paths = _read(
        samples, embeddings_field, run_key, span(progress, 0, 0.3, "reading")
    )
    searcher = dups.Searcher(U, within)
    pv = _preview(searcher, span(progress, 0.3, 1.0, "neighbours"))
    out = _public_preview(pv, ids, paths)
    if len(_PREVIEWS) >= _PREVIEWS_MAX:
        _PREVIEWS.pop(next(iter(_PREVIEWS)))
    _PREVIEWS[key] = out
    return out


def _preview_key(samples, field, run_key):
    try:
        changed = samples.max("last_modified_at")
    except Exception:
        changed = None
    stages = str(samples.view()._serialize(include_uuids=False))
    return (samples._dataset.name, field, run_key, stages, changed)


def _public_preview(pv, ids, paths):
    def pairs(rows):
        return [
            dict(
                ids=[str(ids[i]), str(ids[j])],
                filepaths=[paths[i], paths[j]],
                similarity=round(s, 5),
            )
            for i, j, s in rows
        ]

    return dict(
        n_samples=int(pv["n"]),
        histogram=pv["histogram"],
        counts=pv["counts"],
        suggested=pv["suggested"],
        found=pv["found"],
        examples=dict(above=pairs(pv["above"]), below=pairs(pv["below"])),
    )


def _check_new(samples, dup_key, keep):
    """The checks before anything is claimed or written."""
    check_sample_collection(samples, "find_duplicates")
    runs.check_new_key(samples, dup_key)
    if keep not in KEEP_CHOICES:
        raise InputError(
            f"keep must be one of {', '.join(KEEP_CHOICES)}, not {keep!r}"
        )
    dataset = samples._dataset
    for field in duplicate_fields(dup_key):
        ensure_new_field(dataset, field)
    view = not_kept_view_name(dup_key)
    if dataset.has_saved_view(view):
        raise InputError(
            f"Dataset '{dataset.name}' already has a saved view '{view}'; "
            "delete or rename it, or choose another dup_key"
        )


def find_duplicates(
    samples,
    dup_key,
    embeddings_field,
    threshold=None,
    run_key=None,
    keep="typical",
    exact=True,
    tag=None,
    progress=None,
):
    """Finds groups of near-duplicate samples and keeps one of each.

    Two samples are near duplicates when the cosine similarity of their
    embeddings is at least ``threshold``, and exact duplicates when their
    files have the same contents; groups are the connected components of
    these pairs. Writes ``<dup_key>_group`` and ``<dup_key>_keep`` on the
    samples of the groups, saves the view ``"<dup_key> not kept"`` and
    stores the run. Nothing is written unless everything succeeds.

    Args:
        samples: a dataset or view
        dup_key: a new run key
        embeddings_field: the vector field every sample has
        threshold (None): a cosine similarity in (0, 1]; ``None`` takes
            the one :func:`duplicate_threshold_preview` suggests
        run_key (None): a clustering run covering the view: only pairs
            within one of its clusters (noise counts as one) are searched
        keep ("typical"): which sample of a group is kept: ``"typical"``
            (closest to the group's mean embedding) or ``"largest"`` (the
            largest image, in pixels; ties by typicality)
        exact (True): also group files of equal contents
        tag (None): also tag the samples that are not kept
        progress (None): an optional ``progress(fraction, stage)``

    Returns:
        a dict: ``summary`` (readable lines), ``dup_key``, the fields, the
        saved view, the threshold used, numbers of groups, pairs and
        samples not kept, group sizes, the preview (when the threshold
        was suggested) and ``timings``
    """
    threshold = check_threshold(threshold)
    _check_new(samples, dup_key, keep)
    fields = list(duplicate_fields(dup_key))
    with claims.claim(samples, dup_key, fields) as claim:
        _check_new(samples, dup_key, keep)  # again, under the claim
        out = _run(
            samples,
            dup_key,
            embeddings_field,
            threshold,
            run_key,
            keep,
            exact,
            claim,
            progress,
        )
    if tag:
        samples._dataset.load_saved_view(out["saved_views"][0]).tag_samples(
            tag
        )
    return out


# long: the stages of one run, in order, under one claim and rollback
def _run(
    samples, dup_key, field, threshold, run_key, keep, exact, claim, progress
):
    weights = dict(reading=3, neighbours=4, pairs=4, files=1, writing=2)
    stages = Stages(progress, weights)
    with stages("reading") as rep:
        ids, U, within, paths = _read(samples, field, run_key, rep)
    pv = None
    with stages("neighbours") as rep:
        searcher = dups.Searcher(U, within)
        if threshold is None:
            # one pass: the neighbours for the suggestion, and the pairs
            # above a floor, filtered once the suggestion is known
            pv = _preview(searcher, rep, floor=FLOOR, max_pairs=20 * len(U))
    used = pv["suggested"] if pv else threshold
    with stages("pairs") as rep:
        if pv is not None and pv["pairs"] is not None and used >= FLOOR:
            I, J, S = (a[pv["pairs"][2] >= used] for a in pv["pairs"])
        else:
            I, J, S = searcher.pairs(used, rep)
    del searcher
    n_exact, unreadable = 0, 0
    with stages("files") as rep:
        if exact:
            hashes, unreadable = dups.file_hashes(paths, progress=rep)
            HI, HJ = dups.hash_pairs(hashes)
            n_exact = len(HI)
            I, J = np.concatenate([I, HI]), np.concatenate([J, HJ])
        groups = dups.components(len(ids), I, J)
        members = np.flatnonzero(groups >= 0)
        areas = None
        if keep == "largest":
            areas = np.full(len(ids), np.nan)
            areas[members] = dups.image_areas([paths[i] for i in members])
        kept = dups.keep_one(groups, U, areas)
    config = dict(
        embeddings_field=field,
        threshold=used,
        threshold_suggested=pv is not None,
        run_key=run_key,
        keep=keep,
        exact=exact,
        group_field=f"{dup_key}_group",
        keep_field=f"{dup_key}_keep",
        fields=list(duplicate_fields(dup_key)),
        n_samples=len(ids),
    )
    results = _results(groups, kept, len(S), n_exact, unreadable, dup_key)
    if pv is not None:
        results["preview"] = _public_preview(pv, ids, paths)
    with stages("writing") as rep, Rollback() as undo:
        claim.set_phase("writing", views=[not_kept_view_name(dup_key)])
        undo.push(remove_fields, samples._dataset, config["fields"])
        _write(samples, ids, groups, kept, members, config, rep, claim)
        view = _not_kept_view(samples._dataset, dup_key)
        undo.push(_delete_view, samples._dataset, not_kept_view_name(dup_key))
        samples._dataset.save_view(not_kept_view_name(dup_key), view)
        claim.set_phase("registering")
        results["timings"] = stages.timings()
        runs.register(samples, dup_key, config, results, kind=KIND)
    stages.done()
    return dict(
        results,
        dup_key=dup_key,
        fields=config["fields"],
        threshold=used,
        summary=duplicates_summary(config, results),
    )


def _results(groups, kept, n_pairs, n_exact, unreadable, dup_key):
    sizes = np.bincount(groups[groups >= 0]) if (groups >= 0).any() else []
    size_counts = {}
    for s in sizes:
        size_counts[str(int(s))] = size_counts.get(str(int(s)), 0) + 1
    return dict(
        n_groups=int(len(sizes)),
        n_in_groups=int((groups >= 0).sum()),
        n_not_kept=int((~kept).sum()),
        n_pairs=int(n_pairs),
        n_exact_pairs=int(n_exact),
        unreadable_files=int(unreadable),
        group_sizes=dict(
            sorted(size_counts.items(), key=lambda kv: -int(kv[0]))
        ),
        largest_group=int(max(sizes)) if len(sizes) else 0,
        saved_views=[not_kept_view_name(dup_key)],
    )


def _write(samples, ids, groups, kept, members, config, progress, claim):
    """Writes the group and keep fields of the group members."""
    write_fields(
        samples._dataset,
        [ids[i] for i in members],
        {
            config["group_field"]: groups[members].astype(int),
            config["keep_field"]: kept[members].astype(bool),
        },
        {
            config["group_field"]: fo.IntField,
            config["keep_field"]: fo.BooleanField,
        },
        progress=progress,
        tag=claim.token,
    )


def _not_kept_view(dataset, dup_key):
    group, keep = duplicate_fields(dup_key)
    return dataset.match(F(keep) == False).sort_by(group)  # noqa: E712


def _delete_view(dataset, name):
    if dataset.has_saved_view(name):
        dataset.delete_saved_view(name)


def duplicates_summary(config, results):
    """Readable lines about a duplicates run."""
    sizes = ", ".join(
        f"{n} of {s}" for s, n in list(results["group_sizes"].items())[:5]
    )
    how = (
        "suggested by the histogram"
        if config.get("threshold_suggested")
        else "given"
    )
    lines = [
        f"{results['n_groups']:,} groups of duplicates among "
        f"{config['n_samples']:,} samples ({results['n_in_groups']:,} "
        f"samples in groups; group sizes: {sizes or 'none'})",
        f"Cosine similarity threshold {config['threshold']:.4g} ({how}): "
        f"{results['n_pairs']:,} similar pairs"
        + (
            f"; {results['n_exact_pairs']:,} exact copies by file content"
            if config.get("exact")
            else ""
        ),
        f"Kept one per group ({config['keep']}): {results['n_not_kept']:,} "
        f"samples not kept, in saved view '{results['saved_views'][0]}'",
        f"Fields: {', '.join(config['fields'])}",
    ]
    if config.get("run_key"):
        lines.append(f"Pairs within clusters of run '{config['run_key']}'")
    if results.get("unreadable_files"):
        lines.append(
            f"{results['unreadable_files']:,} files could not be read "
            "(not compared by content)"
        )
    return lines


def list_duplicates_runs(samples):
    """The keys of the duplicates runs of the collection's dataset."""
    return runs.list_runs(samples, KIND)


def get_duplicates_run_info(samples, dup_key):
    """Summary, config, timestamp, versions and results of a duplicates
    run, as a JSON-ready dict."""
    info = runs.get_info(samples, dup_key, KIND)
    results = runs.load_results(samples, dup_key, KIND)
    summary = duplicates_summary(info["config"], results)
    return dict(summary=summary, **info, results=results)


def rename_duplicates_run(samples, dup_key, new_dup_key):
    """Renames a duplicates run and its saved view (its fields keep their
    names)."""
    runs.rename(samples, dup_key, new_dup_key, KIND)


def delete_duplicates_run(samples, dup_key):
    """Deletes a duplicates run, its fields and its saved view."""
    runs.delete(samples, dup_key, KIND)


def duplicate_groups_view(samples, dup_key, run_key=None, cluster_id=None):
    """The samples of the run's groups, group by group (the kept sample
    first in each); with ``run_key`` and ``cluster_id``, the whole groups
    that have a member in that cluster of a clustering run."""
    config = runs.get_config(samples, dup_key, KIND)
    group, keep = config["group_field"], config["keep_field"]
    view = samples.match(F(group) != None)  # noqa: E711
    if run_key is not None:
        field = runs.cluster_field(samples, run_key)
        cid = str(cluster_id)
        ids = view.match(F(field) == cid).distinct(group)
        view = view.match(F(group).is_in(ids))
    return view.sort_by([(group, 1), (keep, -1)])


def duplicates_per_cluster(samples, dup_key, cluster_field):
    """Per cluster id: samples in groups and samples not kept."""
    config = runs.get_config(samples, dup_key, KIND)
    group, keep = config["group_field"], config["keep_field"]
    view = samples.match(F(group) != None)  # noqa: E711
    in_groups = view.count_values(cluster_field)
    not_kept = view.match(F(keep) == False).count_values(  # noqa: E712
        cluster_field
    )
    return {
        str(c): dict(in_groups=n, not_kept=not_kept.get(c, 0))
        for c, n in in_groups.items()
        if c is not None
    }
