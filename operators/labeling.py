"""Operator that names the clusters of a run with a multimodal LLM."""

import fiftyone.operators.types as types

from .. import api
from ..core import labeling
from ._common import (
    HeavyOperator,
    add_param_inputs,
    add_run_choice_input,
    form_params,
    mark_invalid,
)
from ._execution import call_from_python, run_api
from ._results import labels_output

SECRET = "OPENAI_API_KEY"

# Form keys that are not parameters of api.label_clusters (besides the
# App's own, which form_params drops)
_FORM_ONLY = (
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


def _count(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _server_name(base_url):
    if not base_url:
        return "OpenAI (api.openai.com)"
    return labeling.display_url(base_url)


# The options of the form, in its order (from core.labeling.OPTIONS); the
# seed shows only for random picks
_FORM_OPTIONS = (
    "model",
    "base_url",
    "images_per_cluster",
    "selection",
    "seed",
    "context",
    "max_clusters",
    "overwrite",
    "label_field",
    "detail",
    "max_concurrency",
    "timeout",
)

# Form labels that say more than the option's name
_LABELS = {
    "base_url": "Server URL",
    "selection": "Images shown",
    "seed": "Random seed",
    "context": "About the dataset",
    "max_clusters": "Largest clusters only",
    "overwrite": "Relabel labelled clusters",
    "detail": "Image detail",
    "max_concurrency": "Concurrent requests",
    "timeout": "Timeout per request (s)",
}

# The names and descriptions of the options' choices
_CHOICES = {
    "selection": {
        "representative": (
            "Representative",
            "The most typical members plus a few spread over the cluster",
        ),
        "random": ("Random", "Members drawn at random"),
    },
}


def _form_params(ctx):
    """The :class:`core.schema.Param` s of the form, in its order."""
    params = {p.name: p for p in labeling.OPTIONS.params}
    random = ctx.params.get("selection") == "random"
    return [params[n] for n in _FORM_OPTIONS if n != "seed" or random]


def _add_plan(inputs, ctx, run_key):
    """What would be sent, from :func:`api.estimate_label_clusters`, or
    ``None`` (and an error shown) when the request cannot be planned."""
    try:
        return api.estimate_label_clusters(
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
        return None


def _add_key_check(inputs, ctx):
    """Shows an error when no API key is set."""
    if api_key_from(ctx) is not None:
        return
    inputs.view(
        "missing_key",
        types.Error(
            label=f"No {SECRET}",
            description=(
                f"Set the plugin secret {SECRET} (or the environment "
                "variable of that name where FiftyOne runs); local servers "
                "accept any placeholder"
            ),
        ),
    )


def _add_cost(inputs, plan, server):
    """Shows what will be sent where and what it costs, or that there is
    nothing to send."""
    if plan["requests"] == 0:
        inputs.view(
            "nothing_to_do",
            types.Notice(
                label="Every selected cluster has a label",
                description="Tick 'Relabel labelled clusters' to send them "
                "again",
            ),
        )
        return
    inputs.view(
        "run_info",
        types.Notice(
            label=(
                f"{_count(plan['requests'], 'request')}, "
                f"{_count(plan['images'], 'image')}, about "
                f"{plan['total_tokens']:,} tokens"
            ),
            description=(
                f"{plan['requests']} clusters will be sent to {server} as "
                f"512-px JPEG thumbnails ({len(plan['already_labelled'])} "
                f"already labelled are skipped). Estimated "
                f"{plan['input_tokens']:,} input and "
                f"{plan['output_tokens']:,} output tokens. Labels go into "
                f"'{plan['label_field']}'"
            ),
        ),
    )


def _add_confirmation(inputs, ctx, server):
    """The consent checkbox, invalid until ticked."""
    inputs.bool(
        "confirm_send",
        default=False,
        required=True,
        label=f"Send images of this dataset to {server}",
        description="Required: images leave this machine",
        view=types.CheckboxView(),
    )
    if not ctx.params.get("confirm_send"):
        mark_invalid(
            inputs,
            "confirm_send",
            f"Tick to confirm sending images to {server}",
        )


class LabelClusters(HeavyOperator):
    CONFIG = (
        "label_clusters",
        "Label clusters with an LLM",
        "Name each cluster of a run by showing a few of its images to a "
        "multimodal LLM",
    )

    def form(self, ctx):
        inputs = types.Object()
        run_key = add_run_choice_input(
            inputs,
            ctx,
            label="Clustering run",
            description="The run whose clusters are named",
            latest=True,
        )
        if run_key is None:
            return types.Property(inputs)
        add_param_inputs(
            inputs,
            _form_params(ctx),
            ctx,
            labels=_LABELS,
            choices=_CHOICES,
        )
        plan = _add_plan(inputs, ctx, run_key)
        _add_key_check(inputs, ctx)
        server = _server_name(ctx.params.get("base_url") or None)
        if plan is not None:
            _add_cost(inputs, plan, server)
        _add_confirmation(inputs, ctx, server)
        return self.finish_form(inputs, ctx)

    def execute(self, ctx):
        if ctx.params.get("confirm_send") is not True:
            raise ValueError(
                "Sending images to the LLM server needs the user's "
                "confirmation (confirm_send)"
            )
        # the key comes from the secret when the run executes: it is
        # never a parameter, so it is never stored with a delegated run
        params = form_params(ctx, _FORM_ONLY, drop_blank=True)
        return run_api(
            ctx,
            api.label_clusters,
            ctx.dataset,
            dict(api_key=api_key_from(ctx), **params),
            output=labels_output,
        )

    def work_size(self, ctx):
        """The clusters a run would name (all of the chosen run's)."""
        run_key = ctx.params.get("run_key")
        keys = api.list_clustering_runs(ctx.dataset)
        if run_key not in keys:
            run_key = keys[-1] if keys else None
        if run_key is None:
            return 0, "clusters"
        table = api.get_cluster_table(ctx.dataset, run_key)
        return table["n_clusters"], "clusters"

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
        # calling is consent to send (see above)
        return call_from_python(self, dict(locals(), confirm_send=True))


OPERATORS = [LabelClusters]
