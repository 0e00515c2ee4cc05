"""Edits of a run's clusters by hand: the cluster table, a cluster's view,
names, tags and merges. Cluster ids never change except by a merge, and
every edit is recorded in the run's results."""

import copy
import logging
from datetime import datetime, timezone

import numpy as np

import fiftyone as fo
from fiftyone import ViewField as F

from .. import runs
from ..core import summary as summary_
from ..core.methods import SCORE_KINDS
from ..core.metrics import NOISE_ID
from .assign import assigned_counts
from ..data import (
    InputError,
    Rollback,
    ensure_new_field,
    remove_fields,
    set_values_by_group,
)

logger = logging.getLogger(__name__)

_MAX_CLUSTER_LABEL = 200


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
    if cid == NOISE_ID and not allow_noise:
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


def _higher_is_typical(config):
    return SCORE_KINDS[
        config.get("score_kind") or "distance"
    ].higher_is_typical


def _log_edit(results, op, **details):
    entry = dict(op=op, at=datetime.now(timezone.utc).isoformat())
    entry.update(details)
    results.setdefault("edits", []).append(entry)


def get_cluster_table(samples, run_key, view=None, dup_key=None):
    """A summary of a clustering run and one row per cluster, for
    browsing.

    Args:
        samples: a FiftyOne dataset or view
        run_key: a clustering run key
        view (None): a view of the dataset; if given, each row also counts
            the cluster's members in it (``in_view``)
        dup_key (None): a duplicates run; if given, each row also counts
            the cluster's samples it did not keep (``duplicates``) and
            its samples in groups (``dup_in_groups``)

    Returns:
        a JSON-ready dict with ``run_key``, ``method``, ``params``,
        ``embeddings_field``, ``cluster_field``, ``score_field``,
        ``score_kind``, ``label_field`` (or None), ``n_samples``,
        ``n_clusters`` (noise excluded), ``metrics``, ``edits`` (manual
        renames and merges since the run was computed), ``flags`` (the
        numbers of label suspects and outliers, for the curation actions
        the run has, and of samples ``assigned`` later and ``novel``
        among them, once some were) and ``clusters``: a list of dicts with ``id``,
        ``label``, ``size``, ``score_mean``, ``in_view``, ``stability``
        (``None`` unless the run measured it) and ``assigned`` (samples
        assigned later), and with the curation actions
        ``majority_label``, ``purity``, ``suspects`` and ``outliers``,
        largest first, noise last

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
                stability=c.get("stability"),
                assigned=int(c.get("assigned", 0)),
            )
        )
    rows.sort(key=lambda r: (r["id"] == NOISE_ID, -r["size"], int(r["id"])))
    flags = _add_curation(samples, run_key, results, rows)
    flags.update(assigned_counts(samples, run_key, results))
    _add_duplicates(samples, dup_key, cluster_field, rows)
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
        n_clusters=sum(1 for cid in clusters if cid != NOISE_ID),
        metrics=results.get("metrics") or {},
        edits=list(results.get("edits") or []),
        flags=flags,
        clusters=rows,
    )


def _add_curation(samples, run_key, results, rows):
    """Adds to each row what the run's curation actions found in the
    cluster: ``majority_label`` and ``purity`` (label audit), and the
    number of ``suspects`` and ``outliers`` now; returns the totals of the
    flags the run has (``{"suspects": n, ...}``)."""
    from ._actions import flag_counts

    audit = (results.get("actions") or {}).get("audit_labels") or {}
    stats = audit.get("clusters") or {}
    counts = flag_counts(samples, run_key)
    for r in rows:
        s = stats.get(r["id"]) or {}
        if audit:
            r["majority_label"] = s.get("majority_label")
            r["purity"] = s.get("purity")
        for kind, per_cluster in counts.items():
            r[kind] = int(per_cluster.get(r["id"], 0))
    return {kind: sum(c.values()) for kind, c in counts.items()}


def _add_duplicates(samples, dup_key, cluster_field, rows):
    """Adds to each row the numbers of the cluster's samples that the
    duplicates run ``dup_key`` did not keep and put in groups."""
    if not dup_key:
        return
    from .duplicates import duplicates_per_cluster

    per_cluster = duplicates_per_cluster(samples, dup_key, cluster_field)
    for r in rows:
        counts = per_cluster.get(r["id"]) or {}
        r["duplicates"] = int(counts.get("not_kept", 0))
        r["dup_in_groups"] = int(counts.get("in_groups", 0))


def cluster_view(samples, run_key, cluster_id):
    """The samples of one cluster of a run, most typical first.

    Members are sorted by the run's per-sample score: ascending distance to
    the cluster centre (``score_kind="distance"``), or descending membership
    strength or probability.

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
    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    cid = _check_cluster_id(results, run_key, cluster_id)
    view = samples.match(
        F(runs.cluster_field(samples, run_key, config)) == cid
    )
    score_field = config.get("score_field")
    if score_field and score_field in samples._dataset.get_field_schema():
        view = view.sort_by(score_field, reverse=_higher_is_typical(config))
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
    dataset = samples._dataset
    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    cid = _check_cluster_id(results, run_key, cluster_id, allow_noise=False)
    label = _check_text("label", label)
    cluster_field = runs.cluster_field(samples, run_key, config)
    label_field = config.get("label_field") or f"{cluster_field}_label"

    created = not config.get("label_field")
    if created:
        ensure_new_field(dataset, label_field)
    original = copy.deepcopy(results)
    entry = results["clusters"][cid]
    previous = entry.get("label")
    with Rollback() as undo:
        if created:
            undo.push(remove_fields, dataset, [label_field])
        else:
            undo.push(
                _set_label, dataset, cluster_field, cid, previous, label_field
            )
        if label_field not in dataset.get_field_schema():
            dataset.add_sample_field(label_field, fo.StringField)
        set_values_by_group(dataset, cluster_field, {cid: label}, label_field)
        entry["label"] = label
        entry["label_source"] = "manual"
        _log_edit(
            results, "rename", cluster_id=cid, label=label, previous=previous
        )
        undo.push(runs.save_results, samples, run_key, original)
        runs.save_results(samples, run_key, results)
        if created:
            fields = list(config.get("fields") or []) + [label_field]
            runs.update_config(
                samples, run_key, label_field=label_field, fields=fields
            )
    return dict(
        run_key=run_key,
        cluster_id=cid,
        label=label,
        previous_label=previous,
        label_field=label_field,
        n_samples=int(entry.get("size", 0)),
    )


def _set_label(dataset, cluster_field, cid, label, label_field):
    """Sets the label field of a cluster's members, if the field exists."""
    if label_field in dataset.get_field_schema():
        set_values_by_group(dataset, cluster_field, {cid: label}, label_field)


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
    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    cid = _check_cluster_id(results, run_key, cluster_id)
    tag = _check_text("tag", tag)
    view = samples.match(
        F(runs.cluster_field(samples, run_key, config)) == cid
    )
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
    into, sources = _merge_plan(results, run_key, cluster_ids, into)
    parts = [clusters[into]] + [clusters[c] for c in sources]
    merged = summary_.merge(parts)
    merged["representatives"] = _merged_representatives(dataset, config, parts)

    cluster_field = runs.cluster_field(samples, run_key, config)
    label_field = config.get("label_field")
    if label_field not in dataset.get_field_schema():
        label_field = None
    # What the members hold now, to put back if the merge fails
    members = dataset.match(F(cluster_field).is_in(sources + [into]))
    fields = [cluster_field] + ([label_field] if label_field else [])
    ids, *before = members.values(["id"] + fields)
    with Rollback() as undo:
        undo.push(_put_back, dataset, ids, dict(zip(fields, before)))
        set_values_by_group(
            dataset, cluster_field, {c: into for c in sources}, cluster_field
        )
        if label_field:
            set_values_by_group(
                dataset, cluster_field, {into: merged["label"]}, label_field
            )
        _merge_results(results, into, sources, merged)
        runs.save_results(samples, run_key, results)
    return dict(
        run_key=run_key,
        into=into,
        merged=sources,
        size=merged["size"],
        n_clusters=sum(1 for c in clusters if c != NOISE_ID),
    )


def _merge_plan(results, run_key, cluster_ids, into):
    """Checks a merge request; returns ``(into, sources)``."""
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
    return into, sources


def _put_back(dataset, ids, values):
    """Sets fields of samples back to values read before an edit."""
    for field, old in values.items():
        dataset.set_values(field, dict(zip(ids, old)), key_field="id")


def _merge_results(results, into, sources, merged):
    """Updates a run's results dict for a merge of ``sources`` into
    ``into``."""
    clusters = results["clusters"]
    target = clusters[into]
    merged_from = list(target.get("merged_from") or [])
    for c in sources:
        merged_from += [c] + list(clusters[c].get("merged_from") or [])
        del clusters[c]
    target.update(
        size=merged["size"],
        centroid=merged["centroid"],
        representatives=merged["representatives"],
        score_mean=merged["score_mean"],
        merged_from=merged_from,
    )
    if merged["label"] is not None and not target.get("label"):
        target["label"] = merged["label"]
    _log_edit(results, "merge", into=into, merged=sources, size=merged["size"])


def _merged_representatives(dataset, config, parts):
    """The most typical members of merged clusters, from the union of
    their representatives (which holds the top of the union)."""
    ids = []
    for p in parts:
        ids += [i for i in p.get("representatives") or [] if i not in ids]
    score_field = config.get("score_field")
    if not ids or not score_field:
        return ids[: summary_.REPRESENTATIVES]
    if score_field not in dataset.get_field_schema():
        return ids[: summary_.REPRESENTATIVES]
    found, values = dataset.select(ids).values(["id", score_field])
    score = dict(zip(found, values))
    sign = -1.0 if _higher_is_typical(config) else 1.0
    ids = [i for i in ids if i in score]
    ids.sort(
        key=lambda i: np.inf if score[i] is None else sign * float(score[i])
    )
    return ids[: summary_.REPRESENTATIVES]
