"""Operator that names the clusters of a run with a multimodal LLM."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from .. import api
from ..core import labeling
from ._common import (
    APP_KEYS,
    add_delegation_input,
    add_dropdown_input,
    call_operator,
    heavy_config,
    progress_reporter,
    resolve_delegation,
)

SECRET = "OPENAI_API_KEY"

# Form keys that are not parameters of api.label_clusters
_FORM_ONLY = APP_KEYS + (
    "confirm_send",
    "no_runs",
    "plan",
    "missing_key",
    "nothing_to_do",
    "run_info",
)


def api_key_from(ctx):
    """The API key from the plugin's secret (which FiftyOne resolves from
    the environment when no secrets store is configured), or ``None``."""
    try:
        value = ctx.secrets[SECRET]
    except Exception:  # no secrets for this context
        value = None
    # A secret resolved lazily may come back as an object with .value
    value = getattr(value, "value", value)
    if not value:
        try:
            value = ctx.secret(SECRET)
        except Exception:
            value = None
    return value or None


def _invalid(inputs, key, message):
    prop = inputs.get_property(key)
    prop.invalid = True
    prop.error_message = message


def _count(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _server_name(base_url):
    if not base_url:
        return "OpenAI (api.openai.com)"
    return labeling.display_url(base_url)


class LabelClusters(foo.Operator):
    @property
    def config(self):
        return heavy_config(
            "label_clusters",
            "Label clusters with an LLM",
            "Name each cluster of a run by showing a few of its images to "
            "a multimodal LLM",
            icon="/assets/icon.svg",
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        keys = api.list_clustering_runs(ctx.dataset)
        if not keys:
            inputs.view(
                "no_runs",
                types.Warning(
                    label="This dataset has no clustering runs yet",
                    description="Run `compute_clusters` first",
                ),
            )
            return types.Property(inputs)
        add_dropdown_input(
            inputs,
            "run_key",
            keys,
            keys[-1],
            "Clustering run",
            "The run whose clusters are named",
            required=True,
        )
        run_key = ctx.params.get("run_key", keys[-1])

        inputs.str(
            "model",
            default=labeling.DEFAULT_MODEL,
            label="Model",
            description="A multimodal chat model",
        )
        inputs.str(
            "base_url",
            label="Server URL",
            description=(
                "Any OpenAI-compatible server, e.g. "
                "http://localhost:8000/v1; empty uses OpenAI"
            ),
        )
        inputs.int(
            "images_per_cluster",
            default=5,
            min=1,
            max=20,
            label="Images per cluster",
            description="How many images of each cluster are shown",
        )
        selection = types.Dropdown()
        selection.add_choice(
            "representative",
            label="Representative",
            description=(
                "The most typical members plus a few spread over the "
                "cluster"
            ),
        )
        selection.add_choice(
            "random", label="Random", description="Members drawn at random"
        )
        inputs.enum(
            "selection",
            selection.values(),
            default="representative",
            label="Images shown",
            view=selection,
        )
        if ctx.params.get("selection") == "random":
            inputs.int("seed", default=51, min=0, label="Random seed")
        inputs.str(
            "context",
            label="About the dataset",
            description=(
                "Optional words added to the prompt, e.g. 'camera-trap "
                "photos of wildlife'"
            ),
        )
        inputs.int(
            "max_clusters",
            min=1,
            label="Largest clusters only",
            description="Label only this many of the largest clusters; "
            "empty labels all",
        )
        inputs.bool(
            "overwrite",
            default=False,
            label="Relabel labelled clusters",
            description=(
                "Off: only clusters without a label are sent, so an "
                "interrupted run resumes"
            ),
            view=types.CheckboxView(),
        )
        inputs.str(
            "label_field",
            label="Label field",
            description="Where labels go; default <cluster_field>_label",
        )
        detail = types.Dropdown()
        for d in labeling.DETAILS:
            detail.add_choice(d, label=d)
        inputs.enum(
            "detail",
            detail.values(),
            default="low",
            label="Image detail",
            description=(
                "Thumbnails are at most 512 px, so 'low' loses nothing and "
                "costs least"
            ),
            view=detail,
        )
        inputs.int(
            "max_concurrency",
            default=8,
            min=1,
            max=64,
            label="Concurrent requests",
        )
        inputs.float(
            "timeout",
            default=60.0,
            min=1.0,
            label="Timeout per request (s)",
        )

        plan = None
        try:
            plan = api.estimate_label_clusters(
                ctx.dataset,
                run_key,
                images_per_cluster=ctx.params.get("images_per_cluster") or 5,
                max_clusters=ctx.params.get("max_clusters") or None,
                overwrite=bool(ctx.params.get("overwrite", False)),
                label_field=ctx.params.get("label_field") or None,
                detail=ctx.params.get("detail") or "low",
                context=ctx.params.get("context") or None,
            )
        except ValueError as e:
            inputs.view(
                "plan", types.Error(label="Cannot label", description=str(e))
            )

        if api_key_from(ctx) is None:
            inputs.view(
                "missing_key",
                types.Error(
                    label=f"No {SECRET}",
                    description=(
                        f"Set the plugin secret {SECRET} (or the "
                        "environment variable of that name where FiftyOne "
                        "runs); local servers accept any placeholder"
                    ),
                ),
            )

        server = _server_name(ctx.params.get("base_url") or None)
        if plan is not None:
            if plan["requests"] == 0:
                inputs.view(
                    "nothing_to_do",
                    types.Notice(
                        label="Every selected cluster has a label",
                        description="Tick 'Relabel labelled clusters' to "
                        "send them again",
                    ),
                )
            else:
                inputs.view(
                    "run_info",
                    types.Notice(
                        label=(
                            f"{_count(plan['requests'], 'request')}, "
                            f"{_count(plan['images'], 'image')}, about "
                            f"{plan['total_tokens']:,} tokens"
                        ),
                        description=(
                            f"{plan['requests']} clusters will be sent to "
                            f"{server} as 512-px JPEG thumbnails "
                            f"({len(plan['already_labelled'])} already "
                            f"labelled are skipped). Estimated "
                            f"{plan['input_tokens']:,} input and "
                            f"{plan['output_tokens']:,} output tokens. "
                            f"Labels go into '{plan['label_field']}'"
                        ),
                    ),
                )
        inputs.bool(
            "confirm_send",
            default=False,
            required=True,
            label=f"Send images of this dataset to {server}",
            description="Required: images leave this machine",
            view=types.CheckboxView(),
        )
        if not ctx.params.get("confirm_send"):
            _invalid(
                inputs,
                "confirm_send",
                f"Tick to confirm sending images to {server}",
            )
        add_delegation_input(inputs, ctx, "label_clusters")
        return types.Property(
            inputs, view=types.View(label="Label clusters with an LLM")
        )

    def resolve_delegation(self, ctx):
        return resolve_delegation(ctx, "label_clusters")

    def execute(self, ctx):
        if ctx.params.get("confirm_send") is not True:
            raise ValueError(
                "Sending images to the LLM server needs the user's "
                "confirmation (confirm_send)"
            )
        params = {
            k: v
            for k, v in ctx.params.items()
            if k not in _FORM_ONLY and v is not None and v != ""
        }
        summary = api.label_clusters(
            ctx.dataset,
            api_key=api_key_from(ctx),
            progress=progress_reporter(ctx),
            **params,
        )
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return summary

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("label_field", label="Label field")
        outputs.obj("labelled", label="Labelled", view=types.JSONView())
        outputs.obj("failed", label="Failed", view=types.JSONView())
        outputs.obj("usage", label="Tokens used", view=types.JSONView())
        return types.Property(outputs)

    def __call__(
        self,
        sample_collection,
        run_key,
        model=labeling.DEFAULT_MODEL,
        base_url=None,
        images_per_cluster=5,
        selection="representative",
        seed=51,
        context=None,
        max_concurrency=8,
        max_clusters=None,
        overwrite=False,
        label_field=None,
        detail="low",
        timeout=60.0,
        delegate=False,
    ):
        """Names the clusters of a run by showing a few of their images to
        a multimodal LLM.

        Calling this is consent to send JPEG thumbnails (at most 512 px) of
        the dataset's images to the server. The API key is the plugin
        secret ``OPENAI_API_KEY`` (by default the environment variable of
        that name).

        Args:
            sample_collection: a dataset or view
            run_key: a clustering run key
            model ("gpt-4.1-mini"): the model name
            base_url (None): an OpenAI-compatible server; ``None`` uses
                OpenAI's
            images_per_cluster (5): images shown per cluster (1 to 20)
            selection ("representative"): ``"representative"`` (typical
                plus spread-out members) or ``"random"``
            seed (51): the seed of random choices
            context (None): words about the dataset added to the prompt
            max_concurrency (8): the most requests in flight at once
            max_clusters (None): label only this many of the largest
                clusters
            overwrite (False): whether labelled clusters are sent again
            label_field (None): the label field; default
                ``<cluster_field>_label``
            detail ("low"): the image detail requested
            timeout (60.0): seconds allowed per request
            delegate (False): whether to queue the run for
                ``fiftyone delegated launch``

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult` whose
            ``result`` is the summary of :func:`api.label_clusters`
        """
        params = dict(
            run_key=run_key,
            model=model,
            base_url=base_url,
            images_per_cluster=images_per_cluster,
            selection=selection,
            seed=seed,
            context=context,
            max_concurrency=max_concurrency,
            max_clusters=max_clusters,
            overwrite=overwrite,
            label_field=label_field,
            detail=detail,
            timeout=timeout,
            confirm_send=True,
            delegate=delegate,
        )
        return call_operator(self, sample_collection, params, delegate)


OPERATORS = [LabelClusters]
