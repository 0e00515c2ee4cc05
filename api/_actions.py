"""What every curation action on a clustering run shares (label audit,
outliers, subsets): its field names, the check that it may write them, and
the one path that stores its results with the run.

An action owns fields named ``<run_key>_<what>``; they are listed with the
run's fields, so renaming keeps them and deleting the run deletes them. A
second call of the same action replaces the first one's fields, record and
saved views. Everything is computed before this module writes anything; the
write happens under a claim of the fields and of the run (so two calls on
one run never interleave), and a killed process leaves a claim that the
next call repairs (see :mod:`..claims`).
"""

import datetime

import numpy as np

from .. import claims, runs
from ..data import (
    InputError,
    Rollback,
    check_sample_collection,
    ensure_new_field,
    remove_fields,
    write_fields,
)


def action_fields(run_key, suffixes):
    """``{suffix: "<run_key>_<suffix>"}``."""
    return {s: f"{run_key}_{s}" for s in suffixes}


def check_action(samples, run_key, name, fields, view_names=()):
    """Raises an :class:`InputError` before anything is written if the
    collection cannot hold run ``run_key``'s action ``name`` writing
    ``fields`` and saving ``view_names``: not a dataset or view of one, no
    such run, a field that exists and is neither the run's nor an earlier
    call's of this action, or a saved view of the user's of that name.

    Returns:
        the run's config
    """
    check_sample_collection(samples, name)
    config = runs.get_config(samples, run_key)
    previous = runs.get_actions(samples, run_key).get(name) or {}
    owned = set(previous.get("fields") or [])
    run_fields = set(config.get("fields", [])) - owned
    for field in fields:
        if field in run_fields or field == config.get("cluster_field"):
            raise InputError(
                f"Field '{field}' belongs to run '{run_key}' itself; "
                f"{name} cannot write it"
            )
        ensure_new_field(samples._dataset, field, owned=owned)
    dataset = samples._dataset
    for view in view_names:
        if dataset.has_saved_view(view) and view not in (
            previous.get("saved_views") or []
        ):
            raise InputError(
                f"Dataset '{dataset.name}' already has a saved view "
                f"'{view}' that {name} did not make; delete or rename it"
            )
    return config


def store_action(
    samples,
    run_key,
    name,
    ids,
    values,
    field_types,
    record,
    views=None,
    progress=None,
):
    """Replaces action ``name`` of run ``run_key``: writes ``values`` (one
    per sample of ``ids``) into new fields, saves ``views`` and stores
    ``record`` with the run. The previous call's fields, views and record
    are removed first; if writing fails, the new fields are removed again.

    Args:
        samples: the collection the action ran on
        run_key: the clustering run
        name: the action's name (``"audit_labels"``, ...)
        ids: sample ``ObjectId`` s
        values: ``{field: sequence aligned with ids}``; empty (or
            ``None``) for an action that writes no field, only its record
            and views (a subset)
        field_types: ``{field: FiftyOne field class}``
        record: a JSON-ready dict (config, summary, per cluster, ...)
        views (None): ``{saved view name: view}`` to save over the
            written fields
        progress (None): an optional ``progress(fraction)``

    Returns:
        the stored record (with ``fields``, ``saved_views`` and
        ``timestamp`` added)
    """
    dataset = samples._dataset
    values = values or {}
    fields = list(values)
    views = views or {}
    with claims.claim(samples, None, fields, edits=run_key) as claim:
        check_action(samples, run_key, name, fields, list(views))
        claim.set_phase("writing", views=list(views))
        previous = runs.drop_action(samples, run_key, name)
        if previous:
            remove_fields(dataset, previous.get("fields") or [])
        record = dict(
            record,
            fields=fields,
            saved_views=list(views),
            timestamp=_now(),
        )
        with Rollback() as undo:
            undo.push(remove_fields, dataset, fields)
            if fields:
                write_fields(
                    dataset,
                    ids,
                    values,
                    field_types,
                    progress,
                    tag=claim.token,
                )
            for view_name, view in views.items():
                undo.push(_delete_view, dataset, view_name)
                dataset.save_view(view_name, view, overwrite=True)
            claim.set_phase("committing")
            runs.save_action(samples, run_key, name, record, claim.token)
        claim.set_phase("done")
    return record


def _delete_view(dataset, name):
    if dataset.has_saved_view(name):
        dataset.delete_saved_view(name)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


# Dimensions of the features the actions' neighbour search runs on, and
# the most samples searched exactly (above: an inverted-file index)
FEATURE_DIM = 64
EXACT_MAX = 5000


def run_neighbors(samples, run_key, config, n_neighbors, progress=None):
    """The samples of a run in this view, with their nearest neighbours in
    the run's feature space (its embeddings, L2-normalised if the run
    normalised them, PCA to at most :data:`FEATURE_DIM` dimensions): exact
    up to :data:`EXACT_MAX` samples, else approximate (``"ivf"``, see
    :func:`core.neighbors.knn_graph`).

    Args:
        samples: a dataset or view
        run_key: the run
        config: the run's config
        n_neighbors: neighbours per sample (itself excluded)
        progress (None): an optional ``progress(fraction, label)``

    Returns:
        ``(ids, clusters, knn)``: sample ``ObjectId`` s, their cluster ids
        as integers (``-1``: noise) and the ``(indices, distances)`` graph
        with each row itself first

    Raises:
        InputError: if no sample of the view belongs to the run, or too
            few for ``n_neighbors``
    """
    from ..core.neighbors import knn_graph, prepare_features
    from ..core.progress import report, span
    from ..data import read_vectors

    field = runs.cluster_field(samples, run_key, config)
    members = samples.exists(field)
    n = members.count()
    if n == 0:
        raise InputError(
            f"No sample of this view belongs to run '{run_key}' (none has "
            f"a value in '{field}'): were its samples deleted, or is this "
            "another view?"
        )
    if n <= n_neighbors:
        raise InputError(
            f"Run '{run_key}' has {n} samples in this view; at least "
            f"{n_neighbors + 1} are needed for {n_neighbors} neighbours"
        )
    ids, X = read_vectors(
        members,
        config["embeddings_field"],
        skip_missing=False,
        progress=span(progress, 0.0, 0.3, "reading"),
    )
    report(progress, 0.3, "features")
    by_id = dict(zip(*members.values(["_id", field])))
    clusters = np.array([int(by_id[i]) for i in ids], dtype=np.int64)
    metric = "cosine" if config.get("normalize", True) else "euclidean"
    F = prepare_features(X, metric, n_components=FEATURE_DIM)
    del X
    knn = knn_graph(
        F,
        n_neighbors + 1,
        exact=len(F) <= EXACT_MAX,
        progress=span(progress, 0.4, 0.9, "neighbours"),
        approximate="ivf",
    )
    return ids, clusters, knn


# What the curation actions flag, by kind: the action, the field's suffix
# and the record's lowest flagged value
FLAGS = {
    "suspects": ("audit_labels", "label_suspicion", ("config", "threshold")),
    "outliers": ("compute_outliers", "outlier", ("cutoff",)),
}


def flagged_view(samples, run_key, kind, cluster_id=None):
    """The samples a curation action flagged: the label audit's suspects
    (``kind="suspects"``) or the top outliers (``"outliers"``), most
    suspicious or unusual first, of one cluster or of the whole run.

    Args:
        samples: a dataset or view (the result keeps only its samples)
        run_key: a clustering run
        kind: ``"suspects"`` or ``"outliers"``
        cluster_id (None): a cluster id, or ``None`` for every cluster

    Raises:
        InputError: for an unknown kind, a run without that action, or a
            cluster the run does not have
    """
    from fiftyone import ViewField as F

    if kind not in FLAGS:
        raise InputError(
            f"Unknown kind {kind!r}: use one of {', '.join(FLAGS)}"
        )
    name, suffix, path = FLAGS[kind]
    record = runs.get_actions(samples, run_key).get(name)
    if record is None:
        raise InputError(
            f"Run '{run_key}' has no {kind} yet: run {name} first"
        )
    lowest = record
    for key in path:
        lowest = lowest[key]
    field = f"{run_key}_{suffix}"
    view = samples.match(F(field) >= lowest)
    if cluster_id is not None:
        config = runs.get_config(samples, run_key)
        clusters = runs.load_results(samples, run_key).get("clusters") or {}
        if str(cluster_id) not in clusters:
            raise InputError(f"Run '{run_key}' has no cluster {cluster_id!r}")
        cluster_field = runs.cluster_field(samples, run_key, config)
        view = view.match(F(cluster_field) == str(cluster_id))
    view = view.sort_by(field, reverse=True)
    if kind == "outliers":
        view = view.limit(record["config"]["top"])
    return view


def flag_counts(samples, run_key):
    """Per kind of flag the run has, the flagged samples per cluster id:
    ``{kind: {cluster id: count}}``, counted now (edits since included)."""
    out = {}
    actions = runs.get_actions(samples, run_key)
    if not actions:
        return out
    field = runs.cluster_field(samples, run_key)
    for kind, (name, _, _) in FLAGS.items():
        if name in actions:
            view = flagged_view(samples._dataset, run_key, kind)
            out[kind] = view.count_values(field)
    return out
