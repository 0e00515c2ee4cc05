"""Operators for 2-D projections shown in the App's Embeddings panel."""

import fiftyone.operators.types as types

from .. import api
from ..core.projection import PROJECTIONS
from ._common import (
    HeavyOperator,
    add_choice_input,
    add_dropdown_input,
    add_schema_inputs,
    add_skip_missing_input,
    add_target_view_input,
    call_from_python,
    check_input,
    form_params,
    run_api,
    vector_fields,
)

# Form entries that are not parameters of the API call
_FORM_ONLY = ("source", "no_fields", "no_runs")


def _brain_key_input(inputs, ctx):
    """The brain key, refused when the dataset has it already."""
    inputs.str(
        "brain_key",
        required=True,
        label="Brain key",
        description=(
            "The name the Embeddings panel lists this projection under"
        ),
    )
    key = ctx.params.get("brain_key")
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
    if (ctx.params.get("source") or default) == "run":
        add_dropdown_input(
            inputs,
            "run_key",
            run_keys,
            run_keys[-1],
            "Clustering run",
            "The run whose embeddings to project",
            required=True,
        )
    else:
        add_dropdown_input(
            inputs,
            "embeddings_field",
            fields,
            fields[0],
            "Embeddings field",
            "The vector field to project",
            required=True,
        )


class ComputeProjection(HeavyOperator):
    CONFIG = (
        "compute_projection",
        "Compute projection",
        "Project embeddings to 2-D for the Embeddings panel",
    )

    def resolve_input(self, ctx):
        inputs = types.Object()
        add_target_view_input(inputs, ctx, "Project")
        _brain_key_input(inputs, ctx)
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
        _source_inputs(inputs, ctx, run_keys, fields)
        add_choice_input(
            inputs,
            "method",
            PROJECTIONS,
            "umap",
            "Method",
            "How to project to 2-D",
        )
        add_schema_inputs(
            inputs, PROJECTIONS, ctx.params.get("method", "umap"), ctx
        )
        add_skip_missing_input(inputs)
        return self.finish_form(inputs, ctx)

    def execute(self, ctx):
        # the source chosen last decides: the other one's entry is left
        # from earlier in the form
        unused = {"run": ("embeddings_field",), "field": ("run_key",)}
        drop = _FORM_ONLY + unused.get(ctx.params.get("source"), ())
        params = form_params(ctx, drop)
        return run_api(ctx, api.compute_projection, ctx.target_view(), params)

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
