"""Operators for clustering runs: compute, inspect, rename, delete."""

import fiftyone.operators.types as types

from .. import api, runs
from ..api.clustering import default_reduce
from ..core.embedders import EMBEDDERS
from ..core.methods import METHODS
from ..core.reduce import REDUCERS
from ..data import vector_field_db_name
from .embeddings import RUN_OPTIONS, add_run_options
from ._checks import (
    check_against_samples,
    check_embeddings,
    check_plan,
    mark_invalid,
)
from ._common import (
    HeavyOperator,
    PluginOperator,
    add_choice_input,
    add_run_choice_input,
    add_schema_inputs,
    add_skip_missing_input,
    add_target_view_input,
    check_input,
    form_params,
    light_config,
    vector_fields,
)
from ._execution import call_from_python, run_api
from ._results import clusters_output, code, message_output, run_info_output

# Form entries that are not parameters of the API call
_FORM_ONLY = ("no_fields", "no_runs", "plan_error")


def _run_key_input(inputs, ctx, name="run_key", label="Run key", new=True):
    """A run key input: a free text for a new run, or a dropdown of the
    existing clustering runs."""
    if new:
        inputs.str(
            name,
            required=True,
            label=label,
            description="A name for this run (letters, digits, underscores)",
        )
        key = ctx.params.get(name)
        if key:
            check_input(inputs, name, runs.check_new_key, ctx.dataset, key)
        return key

    return add_run_choice_input(inputs, ctx, name, label)


def _model_input(inputs, ctx, fields):
    """The embeddings to cluster: an existing vector field, or a model
    that computes them first; returns the choice."""
    choices = types.Dropdown()
    choices.add_choice("existing", label="Use an existing embeddings field")
    for cls in EMBEDDERS.classes():
        choices.add_choice(
            cls.name,
            label=f"Compute embeddings with {cls.label}",
            description=cls.description,
        )
    default = "existing" if fields else "open_clip"
    inputs.enum(
        "model",
        choices.values(),
        default=default,
        label="Embeddings",
        description=(
            "Cluster an existing vector field, or compute one first "
            "(samples that already have a vector keep it)"
        ),
        view=choices,
    )
    return ctx.params.get("model", default)


def _embeddings_inputs(inputs, ctx):
    """The model choice and the embeddings field with, for a model, its
    parameters and run options; returns the model chosen (``"existing"``
    for a field), or ``None`` when the form cannot go on (the field should
    exist and none does)."""
    fields = vector_fields(ctx)
    model = _model_input(inputs, ctx, fields)
    if model != "existing":
        inputs.str(
            "embeddings_field",
            default="embeddings",
            required=True,
            label="Embeddings field",
            description="The vector field to compute, then cluster",
        )
        field = ctx.params.get("embeddings_field") or "embeddings"
        if ctx.dataset is not None and ctx.dataset.has_field(field):
            check_input(
                inputs,
                "embeddings_field",
                vector_field_db_name,
                ctx.dataset,
                field,
            )
        add_schema_inputs(inputs, EMBEDDERS, model, ctx)
        add_run_options(inputs)
        return model
    if not fields:
        inputs.view(
            "no_fields",
            types.Warning(
                label="No embeddings field",
                description=(
                    "This dataset has no vector field yet: choose "
                    "a model to compute one"
                ),
            ),
        )
        return None
    field_choices = types.AutocompleteView()
    for f in fields:
        field_choices.add_choice(f, label=f)
    inputs.str(
        "embeddings_field",
        default=fields[0],
        required=True,
        label="Embeddings field",
        description="The vector field to cluster",
        view=field_choices,
    )
    return model


def _method_inputs(inputs, ctx):
    """The method and its parameters; returns the method's class."""
    add_choice_input(
        inputs,
        "method",
        METHODS,
        "hdbscan",
        "Method",
        "The clustering method",
    )
    method = ctx.params.get("method", "hdbscan")
    method_cls = METHODS.get(method)
    add_schema_inputs(inputs, METHODS, method, ctx)
    return method_cls


def _preprocessing_inputs(inputs, ctx, method_cls):
    """L2 normalisation and the reduction (with its parameters)."""
    inputs.bool(
        "normalize",
        default=True,
        label="L2-normalise",
        description="Scale embeddings to unit length first",
        view=types.CheckboxView(),
    )
    choices = types.Dropdown()
    choices.add_choice(
        "auto",
        label="Auto",
        description="UMAP to 5-D for density-based methods, else none",
    )
    choices.add_choice("none", label="None")
    for cls in REDUCERS.classes():
        choices.add_choice(
            cls.name, label=cls.label, description=cls.description
        )
    inputs.enum(
        "reduce",
        choices.values(),
        default="auto",
        label="Reduce dimensions first",
        description=(
            "Density-based methods such as HDBSCAN work best on a UMAP "
            "reduction to a few (5) dimensions (the default for them)"
        ),
        view=choices,
    )
    reduce = default_reduce(method_cls, ctx.params.get("reduce", "auto"))
    if reduce != "none":
        add_schema_inputs(inputs, REDUCERS, reduce, ctx)


def _output_inputs(inputs):
    """Where the run writes: the cluster field and an optional projection;
    and whether samples without embeddings are skipped."""
    inputs.str(
        "cluster_field",
        label="Cluster field",
        description="Where cluster ids go; default <run_key>_cluster",
    )
    inputs.str(
        "projection_brain_key",
        label="Also project to 2-D (brain key)",
        description=(
            "Store a UMAP projection for the Embeddings panel under this "
            "brain key, reusing the run's neighbour graph"
        ),
    )
    add_skip_missing_input(inputs)
    inputs.int(
        "stability_resamples",
        default=0,
        min=0,
        max=100,
        label="Stability resamples",
        description=(
            "0: off. N: cluster N random halves again and score each "
            "cluster's stability (costs about N half-size clusterings)"
        ),
    )


def _api_params(ctx):
    """The form's values as parameters of :func:`api.compute_clusters`."""
    drop = _FORM_ONLY
    if ctx.params.get("model", "existing") == "existing":
        # options left from choosing a model earlier in the form
        drop += ("model",) + RUN_OPTIONS
    return form_params(ctx, drop)


def _plan_args(params):
    """:func:`api.compute_clusters` parameters as those of
    :func:`api.plan_clustering` (which takes the embedding options as one
    dict)."""
    args = dict(params)
    options = {k: args.pop(k) for k in RUN_OPTIONS if k in args}
    if args.get("model") is not None:
        args["embed_options"] = options
    return args


def _samples_to_cluster(inputs, ctx, model):
    """The number of samples a run would cluster, or ``None`` (and the
    embeddings field marked invalid) when the field cannot be clustered."""
    view = ctx.target_view()
    if model != "existing":
        return view.count()
    field = ctx.params.get("embeddings_field") or vector_fields(ctx)[0]
    skip = bool(ctx.params.get("skip_missing", False))
    try:
        return check_embeddings(view, field, skip)
    except ValueError as e:
        mark_invalid(inputs, "embeddings_field", str(e))
        return None


def _check_request(inputs, ctx, model):
    """Checks what only the whole form can tell, once every input is valid
    on its own: the embeddings against the view, the parameters against
    each other (as the API will), and against the number of samples."""
    if any(p.invalid for p in inputs.properties.values()):
        return
    n = _samples_to_cluster(inputs, ctx, model)
    if n is None:
        return
    params = _api_params(ctx)
    if not check_plan(inputs, ctx.target_view(), _plan_args(params)):
        return
    check_against_samples(inputs, params.get("method", "hdbscan"), params, n)


class ComputeClusters(HeavyOperator):
    CONFIG = (
        "compute_clusters",
        "Compute clusters",
        "Cluster an embeddings field as a named run",
    )

    def form(self, ctx):
        inputs = types.Object()
        add_target_view_input(inputs, ctx, "Cluster")
        _run_key_input(inputs, ctx)
        model = _embeddings_inputs(inputs, ctx)
        if model is None:
            return types.Property(inputs)
        method_cls = _method_inputs(inputs, ctx)
        _preprocessing_inputs(inputs, ctx, method_cls)
        _output_inputs(inputs)
        if ctx.dataset is not None:
            _check_request(inputs, ctx, model)
        return self.finish_form(inputs, ctx)

    def resolve_run_name(self, ctx):
        return f"compute_clusters ({ctx.params.get('run_key')})"

    def execute(self, ctx):
        return run_api(
            ctx,
            api.compute_clusters,
            ctx.target_view(),
            _api_params(ctx),
            output=lambda result: clusters_output(result, ctx.params),
        )

    def __call__(
        self,
        sample_collection,
        run_key,
        embeddings_field,
        method="hdbscan",
        cluster_field=None,
        normalize=True,
        reduce="auto",
        skip_missing=False,
        model=None,
        batch_size=None,
        num_workers=None,
        device="auto",
        precision="auto",
        projection_brain_key=None,
        stability_resamples=0,
        delegate=False,
        **params,
    ):
        """Clusters the embeddings of a collection as a named run.

        Args:
            sample_collection: a dataset or view
            run_key: a new run key
            embeddings_field: the vector field to cluster
            method ("hdbscan"): ``kmeans``, ``minibatch_kmeans``,
                ``birch``, ``agglomerative``, ``hdbscan``, ``dbscan`` or
                ``gaussian_mixture``
            cluster_field (None): field for cluster ids; default
                ``<run_key>_cluster``
            normalize (True): whether to L2-normalise embeddings first
            reduce ("auto"): ``none``, ``pca``, ``umap`` or ``auto``
            skip_missing (False): whether to skip samples without an
                embedding instead of failing
            model (None): an embedder (``open_clip``, ``torchvision``,
                ``pixels``, ``zoo``) that first computes
                ``embeddings_field`` where it is missing; with every vector
                present, no model is loaded
            batch_size (None): with ``model``, images per batch
            num_workers (None): with ``model``, processes that decode
                images
            device ("auto"): with ``model``, ``auto``, ``cpu``, ``cuda``
                or ``mps``
            precision ("auto"): with ``model``, ``auto``, ``float32``,
                ``bfloat16`` or ``float16``
            projection_brain_key (None): also store a 2-D UMAP projection
                of the run for the Embeddings panel under this brain key
            stability_resamples (0): refits on random halves whose mean
                best-match Jaccard scores each cluster's stability
            delegate (False): whether to queue the run for
                ``fiftyone delegated launch``
            **params: ``<method>__<param>`` and ``<reduce>__<param>``
                parameters, e.g. ``kmeans__n_clusters=10``

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult`
        """
        return call_from_python(self, locals())


class GetClusteringRunInfo(PluginOperator):
    @property
    def config(self):
        return light_config(
            "get_clustering_run_info",
            "Get clustering run info",
            "Show a clustering run's summary, config and statistics",
        )

    def form(self, ctx):
        inputs = types.Object()
        _run_key_input(inputs, ctx, new=False)
        return types.Property(inputs, view=types.View(label="Run info"))

    def execute(self, ctx):
        return api.get_clustering_run_info(ctx.dataset, ctx.params["run_key"])

    def resolve_output(self, ctx):
        return run_info_output(ctx.results)

    def __call__(self, sample_collection, run_key):
        """Returns the stored config, timestamp, versions and statistics of
        a clustering run.

        Args:
            sample_collection: a dataset or view
            run_key: the run key

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult` whose
            ``result`` is the info dict
        """
        return call_from_python(self, locals())


class RenameClusteringRun(PluginOperator):
    @property
    def config(self):
        return light_config("rename_clustering_run", "Rename clustering run")

    def form(self, ctx):
        inputs = types.Object()
        if _run_key_input(inputs, ctx, new=False) is not None:
            _run_key_input(inputs, ctx, "new_run_key", "New run key")
        return types.Property(inputs, view=types.View(label="Rename run"))

    def execute(self, ctx):
        api.rename_clustering_run(
            ctx.dataset, ctx.params["run_key"], ctx.params["new_run_key"]
        )
        ctx.trigger("reload_dataset")
        return {
            "run_key": ctx.params["new_run_key"],
            "old_run_key": ctx.params["run_key"],
        }

    def resolve_output(self, ctx):
        return message_output(
            "Run renamed",
            f"Run {code(ctx.results.get('old_run_key'))} is now "
            f"{code(ctx.results.get('run_key'))}; its fields keep their "
            "names",
        )

    def __call__(self, sample_collection, run_key, new_run_key):
        """Renames a clustering run.

        Args:
            sample_collection: a dataset or view
            run_key: the current run key
            new_run_key: the new run key
        """
        return call_from_python(self, locals())


class DeleteClusteringRun(PluginOperator):
    @property
    def config(self):
        return light_config("delete_clustering_run", "Delete clustering run")

    def form(self, ctx):
        inputs = types.Object()
        key = _run_key_input(inputs, ctx, new=False)
        if key:
            fields = runs.owned_fields(runs.get_config(ctx.dataset, key))
            inputs.view(
                "warning",
                types.Warning(
                    label="This deletes the run and its fields",
                    description=", ".join(fields),
                ),
            )
        return types.Property(inputs, view=types.View(label="Delete run"))

    def execute(self, ctx):
        key = ctx.params["run_key"]
        fields = runs.owned_fields(runs.get_config(ctx.dataset, key))
        api.delete_clustering_run(ctx.dataset, key)
        ctx.trigger("reload_dataset")
        return {"deleted": key, "fields": fields}

    def resolve_output(self, ctx):
        fields = ctx.results.get("fields") or []
        return message_output(
            "Run deleted",
            f"Deleted run {code(ctx.results.get('deleted'))} and its "
            f"fields {', '.join(code(f) for f in fields) or '(none)'}",
        )

    def __call__(self, sample_collection, run_key):
        """Deletes a clustering run and the sample fields it wrote.

        Args:
            sample_collection: a dataset or view
            run_key: the run key
        """
        return call_from_python(self, locals())


OPERATORS = [
    ComputeClusters,
    GetClusteringRunInfo,
    RenameClusteringRun,
    DeleteClusteringRun,
]
