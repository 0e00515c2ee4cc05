"""Operators for 2-D projections shown in the App's Embeddings panel."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from .. import api
from ..core.projection import PROJECTIONS
from ._common import (
    APP_KEYS,
    vector_fields,
    add_choice_input,
    add_delegation_input,
    add_schema_inputs,
    add_target_view_input,
    call_operator,
    heavy_config,
    progress_reporter,
    resolve_delegation,
)

# Form entries that are not parameters of the API call
_FORM_ONLY = APP_KEYS + ("source", "no_fields", "no_runs")


def _dropdown(inputs, name, values, label, description, default=None):
    choices = types.DropdownView()
    for value in values:
        choices.add_choice(value, label=value)
    inputs.enum(
        name,
        choices.values(),
        default=default,
        required=True,
        label=label,
        description=description,
        view=choices,
    )


class ComputeProjection(foo.Operator):
    @property
    def config(self):
        return heavy_config(
            "compute_projection",
            "Compute projection",
            "Project embeddings to 2-D for the Embeddings panel",
            icon="/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        add_target_view_input(inputs, ctx, "Project")

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
            try:
                api.check_new_brain_key(ctx.dataset, key)
            except ValueError as e:
                prop = inputs.get_property("brain_key")
                prop.invalid = True
                prop.error_message = str(e)

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
        default = "run" if run_keys else "field"
        if ctx.params.get("run_key"):
            default = "run"
        elif ctx.params.get("embeddings_field"):
            default = "field"
        inputs.enum(
            "source",
            sources.values(),
            default=default,
            label="Project",
            view=sources,
        )
        if (ctx.params.get("source") or default) == "run":
            _dropdown(
                inputs,
                "run_key",
                run_keys,
                "Clustering run",
                "The run whose embeddings to project",
                default=run_keys[-1],
            )
        else:
            _dropdown(
                inputs,
                "embeddings_field",
                fields,
                "Embeddings field",
                "The vector field to project",
                default=fields[0],
            )

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
        inputs.bool(
            "skip_missing",
            default=False,
            label="Skip samples without embeddings",
            view=types.CheckboxView(),
        )
        add_delegation_input(inputs, ctx, "compute_projection")
        return types.Property(
            inputs, view=types.View(label="Compute projection")
        )

    def resolve_delegation(self, ctx):
        return resolve_delegation(ctx, "compute_projection")

    def execute(self, ctx):
        params = dict(ctx.params)
        source = params.get("source")
        if source == "run":
            params.pop("embeddings_field", None)
        elif source == "field":
            params.pop("run_key", None)
        for key in _FORM_ONLY:
            params.pop(key, None)
        params = {k: v for k, v in params.items() if v is not None}
        result = api.compute_projection(
            ctx.target_view(), progress=progress_reporter(ctx), **params
        )
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return result

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
        params = dict(
            params,
            brain_key=brain_key,
            embeddings_field=embeddings_field,
            run_key=run_key,
            method=method,
            skip_missing=skip_missing,
            delegate=delegate,
        )
        return call_operator(self, sample_collection, params, delegate)


OPERATORS = [ComputeProjection]
