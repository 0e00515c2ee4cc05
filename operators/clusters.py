"""Operators for clustering runs: compute, inspect, rename, delete."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from .. import api, runs
from ..api.clustering import default_reduce
from ..core.embedders import EMBEDDERS
from ..core.methods import METHODS
from ..core.reduce import REDUCERS
from .embeddings import RUN_OPTIONS, add_run_options
from ._common import (
    HeavyOperator,
    add_choice_input,
    add_run_choice_input,
    add_schema_inputs,
    add_skip_missing_input,
    add_target_view_input,
    call_from_python,
    check_input,
    form_params,
    light_config,
    run_api,
    vector_fields,
)

# Form entries that are not parameters of the API call
_FORM_ONLY = ("no_fields", "no_runs")


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
    parameters and run options; returns whether the form can go on (not
    when the field should exist and none does)."""
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
        add_schema_inputs(inputs, EMBEDDERS, model, ctx)
        add_run_options(inputs)
        return True
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
        return False
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
    return True


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


class ComputeClusters(HeavyOperator):
    CONFIG = (
        "compute_clusters",
        "Compute clusters",
        "Cluster an embeddings field as a named run",
    )

    def resolve_input(self, ctx):
        inputs = types.Object()
        add_target_view_input(inputs, ctx, "Cluster")
        _run_key_input(inputs, ctx)
        if not _embeddings_inputs(inputs, ctx):
            return types.Property(inputs)
        method_cls = _method_inputs(inputs, ctx)
        _preprocessing_inputs(inputs, ctx, method_cls)
        _output_inputs(inputs)
        return self.finish_form(inputs, ctx)

    def resolve_run_name(self, ctx):
        return f"compute_clusters ({ctx.params.get('run_key')})"

    def execute(self, ctx):
        drop = _FORM_ONLY
        if ctx.params.get("model") == "existing":
            # options left from choosing a model earlier in the form
            drop += ("model",) + RUN_OPTIONS
        params = form_params(ctx, drop)
        # unlike the other writers, this has never reloaded the App
        return run_api(
            ctx,
            api.compute_clusters,
            ctx.target_view(),
            params,
            reload=False,
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
            delegate (False): whether to queue the run for
                ``fiftyone delegated launch``
            **params: ``<method>__<param>`` and ``<reduce>__<param>``
                parameters, e.g. ``kmeans__n_clusters=10``

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult`
        """
        return call_from_python(self, locals())


class GetClusteringRunInfo(foo.Operator):
    @property
    def config(self):
        return light_config(
            "get_clustering_run_info",
            "Get clustering run info",
            "Show the config and statistics of a clustering run",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        _run_key_input(inputs, ctx, new=False)
        return types.Property(inputs, view=types.View(label="Run info"))

    def execute(self, ctx):
        return api.get_clustering_run_info(ctx.dataset, ctx.params["run_key"])

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("run_key", label="Run key")
        outputs.str("timestamp", label="Created")
        outputs.str("plugin_version", label="Plugin version")
        outputs.str("fiftyone_version", label="FiftyOne version")
        outputs.obj("config", label="Config", view=types.JSONView())
        outputs.obj("statistics", label="Statistics", view=types.JSONView())
        return types.Property(outputs)

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


class RenameClusteringRun(foo.Operator):
    @property
    def config(self):
        return light_config("rename_clustering_run", "Rename clustering run")

    def resolve_input(self, ctx):
        inputs = types.Object()
        if _run_key_input(inputs, ctx, new=False) is not None:
            _run_key_input(inputs, ctx, "new_run_key", "New run key")
        return types.Property(inputs, view=types.View(label="Rename run"))

    def execute(self, ctx):
        api.rename_clustering_run(
            ctx.dataset, ctx.params["run_key"], ctx.params["new_run_key"]
        )
        ctx.trigger("reload_dataset")
        return {"run_key": ctx.params["new_run_key"]}

    def __call__(self, sample_collection, run_key, new_run_key):
        """Renames a clustering run.

        Args:
            sample_collection: a dataset or view
            run_key: the current run key
            new_run_key: the new run key
        """
        return call_from_python(self, locals())


class DeleteClusteringRun(foo.Operator):
    @property
    def config(self):
        return light_config("delete_clustering_run", "Delete clustering run")

    def resolve_input(self, ctx):
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
        api.delete_clustering_run(ctx.dataset, ctx.params["run_key"])
        ctx.trigger("reload_dataset")
        return {"deleted": ctx.params["run_key"]}

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
