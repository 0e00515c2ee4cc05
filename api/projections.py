"""2-D projections for the App's Embeddings panel, stored as FiftyOne
brain visualization runs and linked to the clustering runs they show."""

import logging

import fiftyone as fo
import fiftyone.brain as fob

from .. import runs
from ..core.progress import Stages, span
from ..core.projection import PROJECTIONS
from ..core.summary import top_values
from ..data import (
    InputError,
    Rollback,
    ensure_new_field,
    read_vectors,
    remove_fields,
    vector_field_db_name,
    write_fields,
)

logger = logging.getLogger(__name__)

# The Embeddings panel colours by at most this many categories
_PANEL_MAX_CATEGORIES = 100


def compute_projection(
    samples,
    brain_key,
    embeddings_field=None,
    run_key=None,
    method="umap",
    skip_missing=False,
    progress=None,
    **params,
):
    """Computes 2-D points of a collection's embeddings for the App's
    Embeddings panel.

    The points are stored as a FiftyOne brain visualization run under
    ``brain_key`` (``dataset.list_brain_runs()``, ``load_brain_results``,
    ``rename_brain_run`` and ``delete_brain_run`` work as for any brain
    run), ready to be coloured by a clustering run's field.

    Given a clustering ``run_key``, the run's embeddings field and samples
    (those of ``samples`` that have a cluster id) are projected, the brain
    key is added to the run's ``projection_keys``, and when the run has more
    than 100 clusters (the panel colours by at most 100 categories) a field
    ``<cluster_field>_top99`` is written, holding the ids of the 99 largest
    clusters and ``"other"`` for the rest; the run's config records it as
    ``color_field`` and among the ``fields`` the run owns. Nothing is written
    unless the whole computation succeeds.

    Args:
        samples: a FiftyOne dataset or view
        brain_key: a new brain key (a Python identifier)
        embeddings_field (None): the vector field to project; needed when
            no ``run_key`` is given
        run_key (None): a clustering run whose embeddings and samples to
            project
        method ("umap"): ``"umap"``, ``"pca"`` or ``"tsne"``; see
            :data:`core.projection.PROJECTIONS`
        skip_missing (False): whether to project only the samples that have
            an embedding, instead of failing when some have none
        progress (None): an optional ``progress(fraction, label)`` callable
        **params: the method's parameters as ``<method>__<param>`` (e.g.
            ``umap__n_neighbors=30``); those of other methods are ignored

    Returns:
        a summary dict: brain key, method and parameters, source field and
        run, number of samples, the field to colour by (or ``None``) and
        timings
    """
    check_new_brain_key(samples, brain_key)
    projector = PROJECTIONS.get(method)(**params)
    view, embeddings_field, run_config = _projection_source(
        samples, embeddings_field, run_key, skip_missing
    )
    n = view.count()
    if n == 0:
        raise InputError("The view is empty: there are no samples to project")
    projector.check_input(n, 2)
    if run_config is not None:
        _plan_color_field(samples, run_key, run_config)

    stages = Stages(progress, {"reading": 1, "projecting": 8, "writing": 1})
    with stages("reading", "read") as report:
        ids, X = read_vectors(view, embeddings_field, progress=report)
        projector.check_input(*X.shape)
    with stages("projecting", "project") as report:
        Y = projector.fit_transform(X, progress=report)
    del X
    with stages("writing", "write") as report:
        color_by = save_projection(
            view,
            brain_key,
            ids,
            Y,
            method,
            projector.params_,
            embeddings_field,
            run_key=run_key,
            progress=report,
        )
    return dict(
        brain_key=brain_key,
        method=method,
        params=dict(projector.params_),
        embeddings_field=embeddings_field,
        run_key=run_key,
        n_samples=len(ids),
        color_by=color_by,
        timings=stages.timings(),
    )


def check_new_brain_key(samples, brain_key):
    """Raises an :class:`InputError` if ``brain_key`` is invalid or taken
    on the collection's dataset."""
    dataset = samples._dataset
    if not isinstance(brain_key, str) or not brain_key.isidentifier():
        raise InputError(
            f"Brain key {brain_key!r} is not valid: use letters, digits and "
            "underscores, not starting with a digit"
        )
    if brain_key in dataset.list_brain_runs():
        raise InputError(
            f"Brain key '{brain_key}' is already taken on dataset "
            f"'{dataset.name}'; choose another, or delete or rename that "
            "brain run first"
        )


def save_projection(
    samples,
    brain_key,
    ids,
    points,
    method,
    params,
    embeddings_field,
    run_key=None,
    progress=None,
):
    """Stores computed 2-D points as a brain visualization run, and links
    them to a clustering run.

    This is the storing half of :func:`compute_projection`, for callers that
    computed the points themselves (e.g. with a neighbour graph shared with
    a clustering run). Either everything below is written or nothing is:

    -   the brain run ``brain_key`` over ``samples``, whose config records
        the projection ``method``, its ``params``, the embeddings field and
        the clustering run;
    -   for a ``run_key`` of more than 100 clusters, the run's colour field
        (see :func:`compute_projection`), recorded in the run's config;
    -   ``brain_key`` appended to the run's ``projection_keys``.

    Args:
        samples: the dataset or view the points belong to
        brain_key: a new brain key
        ids: the sample ids of the rows of ``points``, all in ``samples``
        points: an ``n x 2`` float32 array
        method: the projection method's name
        params: its parameters (JSON-serialisable)
        embeddings_field: the vector field that was projected
        run_key (None): a clustering run to link the projection to
        progress (None): an optional ``progress(fraction, label)`` callable

    Returns:
        the field to colour the points by (the run's cluster or colour
        field), or ``None`` without ``run_key``
    """
    check_new_brain_key(samples, brain_key)
    report = span(progress, 0.0, 1.0, "writing")
    report(0.0)
    config = color_field = None
    if run_key is not None:
        config = runs.get_config(samples, run_key)
        color_field = _plan_color_field(samples, run_key, config)
    if samples.count() != len(ids):
        samples = samples.exists(embeddings_field)
    points = dict(zip((str(i) for i in ids), points))

    with Rollback() as undo:
        if color_field is not None:
            undo.push(_unwind_color_field, samples, run_key, color_field)
            _write_color_field(samples, config, color_field)
            report(0.3)
        undo.push(_delete_brain_run, samples._dataset, brain_key)
        fob.compute_visualization(
            samples,
            points=points,
            brain_key=brain_key,
            progress=False,
            plugin=runs.PLUGIN,
            projection_method=method,
            projection_params=dict(params),
            source_embeddings_field=embeddings_field,
            clustering_run_key=run_key,
        )
        _name_source(samples._dataset, brain_key, embeddings_field, run_key)
        report(0.9, "saved points")
        if run_key is not None:
            _link_projection(samples, run_key, brain_key, color_field)
    report(1.0)
    if config is None:
        return None
    return color_field or config["cluster_field"]


def _name_source(dataset, brain_key, embeddings_field, run_key):
    """Names what was projected where the App's Embeddings panel lists the
    run ("<model> (MANUAL)"): the config's ``model``, which FiftyOne leaves
    empty for points computed outside it (shown as "pre-computed
    embeddings") and never loads for them (they support no updates)."""
    source = f"'{embeddings_field}'"
    if run_key is not None:
        source += f" of clustering run '{run_key}'"
    info = dataset.get_brain_info(brain_key)
    info.config.model = source
    fob.Visualization.update_run_config(dataset, brain_key, info.config)


def _delete_brain_run(dataset, brain_key):
    """Deletes a brain run, if it was registered."""
    if brain_key in dataset.list_brain_runs():
        dataset.delete_brain_run(brain_key)


def list_projections(samples, run_key=None):
    """The brain keys of the projections this plugin computed, optionally
    only those linked to clustering run ``run_key``."""
    keys = samples._dataset.list_brain_runs(
        type=fob.Visualization, plugin=runs.PLUGIN
    )
    if run_key is None:
        return keys
    linked = runs.get_config(samples, run_key).get("projection_keys") or []
    return [k for k in linked if k in keys]


def top_cluster_values(labels, keep=_PANEL_MAX_CATEGORIES - 1):
    """The cluster ids to colour by: the ``keep`` most frequent values of
    ``labels``, the others replaced by ``"other"`` (see
    :func:`core.summary.top_values`)."""
    return top_values(labels, keep)


def _projection_source(samples, embeddings_field, run_key, skip_missing):
    """The view and field to project, and the clustering run's config."""
    config = None
    if run_key is not None:
        config = runs.get_config(samples, run_key)
        run_field = config["embeddings_field"]
        if embeddings_field is not None and embeddings_field != run_field:
            raise InputError(
                f"Clustering run '{run_key}' clustered '{run_field}', not "
                f"'{embeddings_field}': pass one of embeddings_field or "
                "run_key"
            )
        embeddings_field = run_field
        cluster_field = config["cluster_field"]
        if cluster_field not in samples._dataset.get_field_schema():
            raise InputError(
                f"The cluster field '{cluster_field}' of run '{run_key}' "
                "no longer exists; recompute the run"
            )
        samples = samples.exists(cluster_field)
    elif embeddings_field is None:
        raise InputError(
            "Nothing to project: pass embeddings_field (a vector field) or "
            "run_key (a clustering run)"
        )
    vector_field_db_name(samples, embeddings_field)
    if skip_missing:
        samples = samples.exists(embeddings_field)
    return samples, embeddings_field, config


def _plan_color_field(samples, run_key, config):
    """The name of the colour field a run needs (one of at most 100
    categories), or ``None`` if its clusters are no more than 100; raises
    an :class:`InputError` if that name is taken by another field."""
    results = runs.load_results(samples, run_key)
    if len(results.get("clusters") or {}) <= _PANEL_MAX_CATEGORIES:
        return None
    name = config.get("color_field") or (
        f"{config['cluster_field']}_top{_PANEL_MAX_CATEGORIES - 1}"
    )
    ensure_new_field(samples._dataset, name, owned=runs.owned_fields(config))
    return name


def _write_color_field(samples, config, color_field):
    """Writes the colour field of a run over every sample it clustered."""
    dataset = samples._dataset
    cluster_field = config["cluster_field"]
    ids, labels = dataset.exists(cluster_field).values(["_id", cluster_field])
    write_fields(
        dataset,
        ids,
        {color_field: top_cluster_values(labels)},
        {color_field: fo.StringField},
    )


def _link_projection(samples, run_key, brain_key, color_field):
    """Records a projection (and the colour field) in a clustering run."""
    config = runs.get_config(samples, run_key)
    keys = list(config.get("projection_keys") or [])
    updates = dict(projection_keys=keys + [brain_key])
    if color_field is not None:
        fields = list(config.get("fields") or [])
        if color_field not in fields:
            fields.append(color_field)
        updates.update(color_field=color_field, fields=fields)
    runs.update_config(samples, run_key, **updates)


def _unwind_color_field(samples, run_key, field):
    """After a failed projection: removes a colour field that no run
    records, and forgets a recorded one that is gone."""
    config = runs.get_config(samples, run_key)
    if config.get("color_field") != field:
        remove_fields(samples._dataset, [field])
    elif field not in samples._dataset.get_field_schema():
        fields = [f for f in config.get("fields") or [] if f != field]
        runs.update_config(samples, run_key, color_field=None, fields=fields)
