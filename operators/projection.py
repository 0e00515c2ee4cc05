"""Operators for 2-D projections shown in the App's Embeddings panel."""

import fiftyone.operators.types as types

from .. import api, runs
from ..core.projection import PROJECTIONS
from ._checks import check_embeddings, mark_invalid
from ._common import (
    HeavyOperator,
    add_choice_input,
    add_dropdown_input,
    add_schema_inputs,
    add_skip_missing_input,
    check_input,
    form_params,
    vector_fields,
)
from ._execution import call_from_python, run_api
from ._results import projection_output

# Form entries that are not parameters of the API call
_FORM_ONLY = ("source", "no_fields", "no_runs", "target_notice")


def _default_brain_key(ctx, name, method):
    """``<run or field>_<method>``, numbered if taken: the name the
    Embeddings panel lists the projection under names what it shows."""
    taken = set(ctx.dataset.list_brain_runs()) if ctx.dataset else set()
    base = f"{name}_{method}"
    key, i = base, 2
    while key in taken:
        key, i = f"{base}_{i}", i + 1
    return key


def _brain_key_input(inputs, ctx, default):
    """The brain key, refused when the dataset has it already."""
    inputs.str(
        "brain_key",
        required=True,
        default=default,
        label="Brain key",
        description=(
            "The name the Embeddings panel lists this projection under"
        ),
    )
    key = ctx.params.get("brain_key") or default
    if key:
        check_input(
            inputs, "brain_key", api.check_new_brain_key, ctx.dataset, key
        )


def _default_source(ctx, run_keys):
    """A run when the dataset has one, unless the form says otherwise."""
    if ctx.params.get("run_key"):
        return "run"
    if ctx.params.get("embeddings_field"):
        return "field"
    return "run" if run_keys else "field"


def _source_inputs(inputs, ctx, run_keys, fields):
    """What to project: a clustering run, or an embeddings field."""
    sources = types.RadioGroup()
    if run_keys:
        sources.add_choice(
            "run",
            label="A clustering run",
            description=(
                "Its embeddings and samples; the run records the "
                "projection and the field to colour by"
            ),
        )
    if fields:
        sources.add_choice("field", label="An embeddings field")
    default = _default_source(ctx, run_keys)
    inputs.enum(
        "source",
        sources.values(),
        default=default,
        label="Project",
        view=sources,
    )
    source, name = _source(ctx, run_keys, fields)
    if source == "run":
        key, choices, what = "run_key", run_keys, "Clustering run"
        help_text = "The run whose embeddings to project"
    else:
        key, choices, what = "embeddings_field", fields, "Embeddings field"
        help_text = "The vector field to project"
    add_dropdown_input(
        inputs, key, choices, name, what, help_text, required=True
    )


def _source(ctx, run_keys, fields):
    """``(source, run key or field)`` chosen in the form, or their
    defaults: the latest run, else the first field."""
    source = ctx.params.get("source") or _default_source(ctx, run_keys)
    if source == "run":
        return source, ctx.params.get("run_key") or run_keys[-1]
    return source, ctx.params.get("embeddings_field") or fields[0]


def _view_target_input(inputs, ctx, source, run_key):
    """The samples to project: for a run, by default the run's samples
    in the whole dataset, whatever the App's view shows (a grid filtered to
    one cluster), and the form says so."""
    if source != "run":
        inputs.view_target(ctx, action_description="Project")
        return
    inputs.view_target(
        ctx,
        action_description="Project",
        default_target="DATASET",
        dataset_description=f"Every sample of run '{run_key}'",
        current_view_description=(
            f"Only the samples of run '{run_key}' in the current view"
        ),
    )
    if ctx.params.get("view_target", "DATASET") == "DATASET":
        n = ctx.dataset.exists(_cluster_field(ctx, run_key)).count()
        note = f"Projects all {n:,} samples of run '{run_key}'"
        if ctx.has_custom_view:
            note += (
                f" (the whole run), not only the {ctx.view.count():,} of "
                "the current view: choose 'Current view' for those"
            )
        inputs.view("target_notice", types.Notice(label=note))


def _cluster_field(ctx, run_key):
    return runs.get_config(ctx.dataset, run_key)["cluster_field"]


def _check_field(inputs, ctx, source, field):
    """Checks the field to project in the target view, and the method's
    parameters against the number of samples."""
    if source != "field" or inputs.get_property("embeddings_field").invalid:
        return
    skip = bool(ctx.params.get("skip_missing", False))
    try:
        n = check_embeddings(ctx.target_view(), field, skip)
    except ValueError as e:
        mark_invalid(inputs, "embeddings_field", str(e))
        return
    method = ctx.params.get("method") or "umap"
    try:
        params = {
            k: v for k, v in ctx.params.items() if k.startswith(method + "__")
        }
        PROJECTIONS.get(method)(**params).check_input(n, 2)
    except ValueError as e:
        mark_invalid(inputs, "method", str(e))


class ComputeProjection(HeavyOperator):
    CONFIG = (
        "compute_projection",
        "Compute projection",
        "Project embeddings to 2-D for the Embeddings panel",
    )

    def form(self, ctx):
        inputs = types.Object()
        run_keys = api.list_clustering_runs(ctx.dataset)
        fields = vector_fields(ctx)
        if not run_keys and not fields:
            inputs.view(
                "no_fields",
                types.Warning(
                    label="No embeddings field",
                    description=(
                        "This dataset has no vector field yet: run "
                        "`compute_embeddings` first"
                    ),
                ),
            )
            return types.Property(inputs)
        source, name = _source(ctx, run_keys, fields)
        method = ctx.params.get("method") or "umap"
        _view_target_input(inputs, ctx, source, name)
        _brain_key_input(inputs, ctx, _default_brain_key(ctx, name, method))
        _source_inputs(inputs, ctx, run_keys, fields)
        add_choice_input(
            inputs,
            "method",
            PROJECTIONS,
            "umap",
            "Method",
            "How to project to 2-D",
        )
        add_schema_inputs(inputs, PROJECTIONS, method, ctx)
        add_skip_missing_input(inputs)
        _check_field(inputs, ctx, source, name)
        return self.finish_form(inputs, ctx)

    def execute(self, ctx):
        # the source chosen last decides: the other one's entry is left
        # from earlier in the form
        unused = {"run": ("embeddings_field",), "field": ("run_key",)}
        drop = _FORM_ONLY + unused.get(ctx.params.get("source"), ())
        params = form_params(ctx, drop)
        return run_api(
            ctx,
            api.compute_projection,
            ctx.target_view(),
            params,
            output=projection_output,
        )

    def __call__(
        self,
        sample_collection,
        brain_key,
        embeddings_field=None,
        run_key=None,
        method="umap",
        skip_missing=False,
        delegate=False,
        **params,
    ):
        """Computes 2-D points of a collection's embeddings and stores them
        as a brain visualization run for the App's Embeddings panel.

        Args:
            sample_collection: a dataset or view
            brain_key: a new brain key
            embeddings_field (None): the vector field to project; needed
                when no ``run_key`` is given
            run_key (None): a clustering run whose embeddings and samples
                to project; the run records the projection and, for runs of
                more than 100 clusters, a field to colour by
            method ("umap"): ``umap``, ``pca`` or ``tsne``
            skip_missing (False): whether to skip samples without an
                embedding instead of failing
            delegate (False): whether to queue the run for
                ``fiftyone delegated launch``
            **params: ``<method>__<param>`` parameters, e.g.
                ``umap__n_neighbors=30``, ``umap__min_dist=0.1``,
                ``umap__metric="cosine"``, ``umap__random_state=51``,
                ``umap__fit_samples=20000``

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult`
        """
        return call_from_python(self, locals())


OPERATORS = [ComputeProjection]
