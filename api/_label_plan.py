"""What a labelling run will do, worked out before anything is sent: which
clusters, into which field, at what cost, and which images of each cluster
are shown. Nothing here writes."""

import dataclasses
import logging

import numpy as np

from fiftyone import ViewField as F

from .. import runs
from ..core import labeling
from ..core.metrics import NOISE_ID
from ..core.neighbors import l2_normalize
from ..data import InputError, ensure_new_field, read_vectors

logger = logging.getLogger(__name__)

# Members per cluster among which spread-out images are picked
_LABEL_POOL_SIZE = 1000


@dataclasses.dataclass
class LabelPlan:
    """What a labelling request will do, checked against the run.

    Attributes:
        config: the run's config
        results: the run's results (``clusters`` is updated as labels
            arrive)
        label_field: the field labels go into
        todo: the ids of the clusters to send, largest first
        done: the ids of selected clusters skipped as already labelled
    """

    config: dict
    results: dict
    label_field: str
    todo: list
    done: list

    @property
    def clusters(self):
        return self.results.get("clusters") or {}


def plan_labelling(
    samples, run_key, max_clusters, cluster_ids, overwrite, label_field
):
    """Checks a labelling request against the run, before anything is sent
    or written.

    Args:
        samples: a FiftyOne dataset or view
        run_key: a clustering run key
        max_clusters: label only this many of the largest clusters, or
            ``None``
        cluster_ids: label only these clusters, or ``None``
        overwrite: whether clusters that have a label are sent too
        label_field: the label field, or ``None`` for the default

    Returns:
        a :class:`LabelPlan`

    Raises:
        InputError: on an unknown run or cluster, the noise cluster, or a
            label field that is not valid or not the run's
    """
    config = runs.get_config(samples, run_key)
    results = runs.load_results(samples, run_key)
    clusters = results.get("clusters") or {}
    label_field = _check_label_field(
        samples._dataset, config, run_key, label_field
    )
    real = _chosen_clusters(clusters, run_key, cluster_ids)
    real.sort(key=lambda c: (-clusters[c].get("size", 0), int(c)))
    if max_clusters is not None:
        real = real[:max_clusters]
    todo = [c for c in real if overwrite or not clusters[c].get("label")]
    done = [c for c in real if c not in todo]
    return LabelPlan(config, results, label_field, todo, done)


def _check_label_field(dataset, config, run_key, label_field):
    """The label field (default ``<cluster_field>_label``), refused when it
    is not a name, holds other data of the run, or exists and is not the
    run's."""
    cluster_field = runs.cluster_field(dataset, run_key, config)
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
    return label_field


def _chosen_clusters(clusters, run_key, cluster_ids):
    """The real clusters (not the noise) among ``cluster_ids`` (``None``:
    all), refusing the noise and unknown ids."""
    real = [cid for cid in clusters if cid != NOISE_ID]
    if cluster_ids is None:
        return real
    cluster_ids = [str(c) for c in cluster_ids]
    if NOISE_ID in cluster_ids:
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
    return [c for c in real if c in set(cluster_ids)]


def estimate_cost(plan, images_per_cluster, detail, context):
    """Requests, images and tokens of labelling the clusters of a
    :class:`LabelPlan`, as :func:`core.labeling.estimate` counts them;
    clusters smaller than ``images_per_cluster`` show all their members."""
    clusters = plan.clusters
    todo = plan.todo
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


def label_jobs(dataset, plan, opts):
    """The images to show for each cluster to label.

    Args:
        dataset: the run's dataset
        plan: a :class:`LabelPlan`
        opts: the validated options (``images_per_cluster``, ``selection``
            and ``seed`` are used)

    Returns:
        a list of :class:`core.labeling.Job`, in the order of ``plan.todo``
    """
    todo = plan.todo
    if not todo:
        return []
    selection = opts["selection"]
    seed = opts["seed"]
    clusters = plan.clusters
    members = _members(dataset, plan.config["cluster_field"], todo)
    pools = _candidate_pools(members, clusters, selection, seed)
    vectors = {}
    if selection == "representative":
        pools, vectors = _pool_vectors(dataset, plan.config, pools)
    shown = {
        cid: labeling.select_members(
            pools[cid],
            vectors.get(cid),
            opts["images_per_cluster"],
            selection,
            representatives=clusters[cid].get("representatives", []),
            seed=[seed, int(cid)],
        )
        for cid in todo
    }
    return _jobs_with_paths(dataset, todo, shown)


def _members(dataset, cluster_field, todo):
    """``{cluster id: member ids}`` for the clusters ``todo``."""
    view = dataset.match(F(cluster_field).is_in(todo))
    ids, cids = view.values(["id", cluster_field])
    members = {c: [] for c in todo}
    for _id, cid in zip(ids, cids):
        members[cid].append(_id)
    return members


def _candidate_pools(members, clusters, selection, seed):
    """The members among which images are picked: a large cluster's
    representatives plus :data:`_LABEL_POOL_SIZE` members drawn with
    ``seed`` when showing representative images, every member otherwise."""
    rng = np.random.default_rng(seed)
    pools = {}
    for cid, m in members.items():
        if selection == "representative" and len(m) > _LABEL_POOL_SIZE:
            reps = list(clusters[cid].get("representatives", []))
            keep = set(reps)
            others = [i for i in m if i not in keep]
            pick = rng.choice(len(others), _LABEL_POOL_SIZE, replace=False)
            m = reps + [others[i] for i in np.sort(pick)]
        pools[cid] = m
    return pools


def _pool_vectors(dataset, config, pools):
    """The embeddings of the pools' members, for spread-out picks.

    Returns:
        ``(pools, vectors)``: each pool cut to the members that have an
        embedding, and ``{cluster id: float32 matrix}``; the pools as they
        were and no vectors when the run's embeddings cannot be read (the
        spread-out images are then random)
    """
    field = config.get("embeddings_field")
    if not field:
        return pools, {}
    pool_ids = [i for m in pools.values() for i in m]
    try:
        vids, X = read_vectors(
            dataset.select(pool_ids), field, skip_missing=True
        )
    except InputError as e:
        logger.warning(
            "Cannot read '%s' (%s): spread-out images are picked at random",
            field,
            e,
        )
        return pools, {}
    if config.get("normalize"):
        X = l2_normalize(X)
    row = {str(i): r for r, i in enumerate(vids)}
    pools = dict(pools)
    vectors = {}
    for cid, m in pools.items():
        have = [i for i in m if i in row]
        if have:
            pools[cid] = have
            vectors[cid] = X[[row[i] for i in have]]
    return pools, vectors


def _jobs_with_paths(dataset, todo, shown):
    """One :class:`core.labeling.Job` per cluster, with the file paths of
    the members ``shown``."""
    all_shown = [i for cid in todo for i in shown[cid]]
    sids, paths = dataset.select(all_shown).values(["id", "filepath"])
    path_of = dict(zip(sids, paths))
    return [
        labeling.Job(cid, [path_of[i] for i in shown[cid]], list(shown[cid]))
        for cid in todo
    ]
