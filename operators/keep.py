"""Operators that decide what to keep: near-duplicate groups (with the
threshold chosen from a histogram shown in the form) and balanced subsets
of a clustering run."""

import fiftyone.operators.types as types

from .. import api, runs
from ..api.duplicates import check_threshold
from ..core.subsets import SUBSET_ORDERS
from ._common import (
    HeavyOperator,
    add_dropdown_input,
    add_run_choice_input,
    check_input,
    form_params,
    vector_fields,
)
from ._execution import call_from_python, run_api, timed
from ._results import action_output

_FORM_ONLY = (
    "no_runs",
    "no_fields",
    "preview",
    "preview_plot",
    "preview_error",
)

# The form computes the threshold preview for views up to this size (it
# is cached per view; larger views show it in the result instead)
PREVIEW_FORM_MAX = 200000


def preview_markdown(pv):
    """The threshold preview as Markdown: what each threshold flags, the
    suggestion, and example pairs just above and below it (thumbnails
    through the App's media route)."""
    found = (
        "a separate mode of near duplicates shows in the histogram"
        if pv["found"]
        else "no separate mode of near duplicates shows: a default"
    )
    rows = [
        "| threshold | samples with a neighbour at or above |",
        "|---|---|",
    ]
    for t, n in pv["counts"]:
        mark = " **(suggested)**" if t == pv["suggested"] else ""
        rows.append(f"| {t:.4g}{mark} | {n:,} of {pv['n_samples']:,} |")
    lines = [
        f"**Suggested threshold: {pv['suggested']:.4g}** ({found})",
        "\n".join(rows),
    ]
    for key, title in (("above", "just above"), ("below", "just below")):
        pairs = pv["examples"][key]
        if not pairs:
            continue
        # a table: the two images of a pair side by side
        rows = [
            f"**Pairs {title} it:**\n",
            "| similarity | sample | its nearest neighbour |",
            "|---|---|---|",
        ]
        for p in pairs:
            a, b = (f"/media?filepath={f}" for f in p["filepaths"])
            rows.append(f"| {p['similarity']:.4f} | ![a]({a}) | ![b]({b}) |")
        lines.append("\n".join(rows))
    return "\n\n".join(lines)


def preview_plot(pv):
    """The nearest-neighbour similarity histogram as a Plotly bar trace
    and layout (bins equally spaced in ``log10(1 - similarity)``)."""
    h = pv["histogram"]
    labels = [f"{max(lo, 0):.4g}" for lo in h["lo"]]
    colours = [
        "#2c7be5" if lo >= pv["suggested"] else "#ff6d04" for lo in h["lo"]
    ]
    data = [
        dict(
            type="bar",
            x=labels,
            y=h["count"],
            marker=dict(color=colours),
            name="samples",
        )
    ]
    layout = dict(
        xaxis=dict(
            type="category",
            title=dict(text="nearest-neighbour " "similarity (bin start)"),
        ),
        # log scale, a tick per power of ten
        yaxis=dict(type="log", dtick=1, title=dict(text="samples")),
        height=260,
        margin=dict(t=8, l=48, b=60, r=8),
        bargap=0.05,
    )
    return data, layout


def _preview_inputs(inputs, ctx, field, run_key):
    """The histogram, counts and example pairs, in the form."""
    view = ctx.target_view()
    if view.count() > PREVIEW_FORM_MAX:
        inputs.md(
            f"The view has more than {PREVIEW_FORM_MAX:,} samples: leave "
            "the threshold empty to use the suggested one; the result "
            "shows the histogram's numbers",
            name="preview",
        )
        return
    try:
        pv = api.duplicate_threshold_preview(view, field, run_key)
    except ValueError as e:
        inputs.view(
            "preview_error",
            types.Warning(label="No preview", description=str(e)),
        )
        return
    data, layout = preview_plot(pv)
    inputs.md(
        "**Similarity of each sample to its nearest neighbour** (blue: at "
        "or above the suggested threshold)",
        name="preview_title",
    )
    inputs.plot(
        "preview_plot",
        data=data,
        layout=layout,
        config={"displayModeBar": False},
        height="260px",
    )
    inputs.md(preview_markdown(pv), name="preview")
    return pv


class FindDuplicates(HeavyOperator):
    CONFIG = (
        "find_duplicates",
        "Find duplicates",
        "Group near-duplicate and identical images; keep one of each",
    )

    # long: the form's inputs in the order the user fills them
    def form(self, ctx):
        inputs = types.Object()
        inputs.str(
            "dup_key",
            required=True,
            label="Duplicates run key",
            description="A name for this run (letters, digits, underscores)",
        )
        key = ctx.params.get("dup_key")
        if key:
            check_input(
                inputs, "dup_key", runs.check_new_key, ctx.dataset, key
            )
        fields = vector_fields(ctx)
        if not fields:
            inputs.view(
                "no_fields",
                types.Warning(
                    label="No embeddings field",
                    description="Compute embeddings first",
                ),
            )
            return types.Property(inputs)
        add_dropdown_input(
            inputs,
            "embeddings_field",
            fields,
            fields[0],
            "Embeddings field",
            "Near duplicates are compared by the cosine similarity of this "
            "field",
            required=True,
        )
        field = ctx.params.get("embeddings_field") or fields[0]
        run_keys = api.list_clustering_runs(ctx.dataset)
        if run_keys:
            add_dropdown_input(
                inputs,
                "run_key",
                run_keys,
                None,
                "Within the clusters of (optional)",
                "Only compare samples of the same cluster of this run "
                "(cheaper on large datasets)",
            )
        run_key = ctx.params.get("run_key") or None
        pv = _preview_inputs(inputs, ctx, field, run_key)
        suggested = f" ({pv['suggested']:.4g})" if pv else ""
        inputs.float(
            "threshold",
            label="Cosine similarity threshold",
            description=(
                "Pairs at or above it are near duplicates, in (0, 1]; empty "
                f"takes the suggested one{suggested}"
            ),
        )
        value = ctx.params.get("threshold")
        if value not in (None, ""):
            check_input(inputs, "threshold", check_threshold, value)
        keep = types.Dropdown()
        keep.add_choice(
            "typical",
            label="The most typical (closest to " "the group's mean)",
        )
        keep.add_choice("largest", label="The largest image")
        inputs.enum(
            "keep",
            keep.values(),
            default="typical",
            view=keep,
            label="Keep per group",
        )
        inputs.bool(
            "exact",
            default=True,
            view=types.CheckboxView(),
            label="Also group identical files (content hash)",
        )
        inputs.str("tag", label="Tag the samples not kept (optional)")
        inputs.view_target(ctx, action_description="Find duplicates in")
        return self.finish_form(inputs, ctx)

    def execute(self, ctx):
        params = form_params(ctx, _FORM_ONLY, drop_blank=True)
        params = {
            k: v for k, v in params.items() if not k.startswith("preview")
        }
        return run_api(
            ctx,
            timed(api.find_duplicates),
            ctx.target_view(),
            params,
            output=lambda out: action_output("Duplicates found", out),
        )

    def __call__(
        self,
        sample_collection,
        dup_key,
        embeddings_field,
        threshold=None,
        run_key=None,
        keep="typical",
        exact=True,
        tag=None,
        delegate=False,
    ):
        """Finds near-duplicate groups and keeps one of each (see
        :func:`api.find_duplicates`).

        Args:
            sample_collection: a dataset or view
            dup_key: a new run key
            embeddings_field: a vector field
            threshold (None): a cosine similarity in (0, 1]; ``None``
                takes the suggested one
            run_key (None): only compare within this run's clusters
            keep ("typical"): ``"typical"`` or ``"largest"``
            exact (True): also group identical files
            tag (None): also tag the samples not kept
            delegate (False): whether to queue it for a worker

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult`
        """
        return call_from_python(self, locals())


class SelectSubset(HeavyOperator):
    CONFIG = (
        "select_subset",
        "Select subset",
        "Pick n samples spread across a clustering run's clusters",
    )

    def form(self, ctx):
        inputs = types.Object()
        run_key = add_run_choice_input(
            inputs, ctx, label="Clustering run", latest=True
        )
        if run_key is None:
            return types.Property(inputs)
        inputs.int(
            "n",
            required=True,
            min=1,
            label="Samples to select",
            description=(
                "An equal share per cluster, capped by the cluster's size; "
                "at least the number of clusters. A kind of image split "
                "over two clusters gets two shares: merge them first"
            ),
        )
        inputs.str("tag", label="Tag the chosen samples (optional)")
        _add_order_inputs(inputs)
        dup_keys = api.list_duplicates_runs(ctx.dataset)
        if dup_keys:
            add_dropdown_input(
                inputs,
                "dup_key",
                dup_keys,
                None,
                "Skip duplicates not kept by (optional)",
                "A duplicates run",
            )
        for key, label in (
            (
                "skip_outliers",
                "Skip the run's top outliers " "(from Compute outliers)",
            ),
            ("skip_noise", "Skip noise"),
        ):
            inputs.bool(
                key, default=False, view=types.CheckboxView(), label=label
            )
        inputs.view_target(
            ctx, action_description="Select from", default_target="DATASET"
        )
        return self.finish_form(inputs, ctx)

    def execute(self, ctx):
        params = form_params(ctx, _FORM_ONLY, drop_blank=True)
        return run_api(
            ctx,
            timed(api.select_subset),
            ctx.target_view(),
            params,
            output=lambda out: action_output("Subset selected", out),
        )

    def __call__(
        self,
        sample_collection,
        run_key,
        n,
        tag=None,
        order="spread",
        dup_key=None,
        skip_outliers=False,
        skip_noise=False,
        sub_clusters=3,
        delegate=False,
    ):
        """Picks ``n`` samples spread across a run's clusters (see
        :func:`api.select_subset`).

        Args:
            sample_collection: a dataset or view
            run_key: a clustering run
            n: how many samples
            tag (None): also tag them
            order ("spread"): ``"spread"``, ``"typical"`` or ``"random"``
            dup_key (None): skip the samples this duplicates run did not
                keep
            skip_outliers (False): skip the run's top outliers
            skip_noise (False): skip noise
            sub_clusters (3): above 1, share each cluster's quota among
                this many k-means parts of it; 1: equal shares per cluster
                only
            delegate (False): whether to queue it for a worker

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult`
        """
        return call_from_python(self, locals())


def _add_order_inputs(inputs):
    """The order within a cluster, and the parts a cluster's share is
    shared among."""
    order = types.Dropdown()
    for cls in SUBSET_ORDERS.classes():
        order.add_choice(
            cls.name, label=cls.label, description=cls.description
        )
    inputs.enum(
        "order",
        order.values(),
        default="spread",
        view=order,
        label="Within a cluster",
    )
    inputs.int(
        "sub_clusters",
        default=3,
        min=1,
        label="Parts per cluster",
        description=(
            "Each cluster's share is shared again equally among this "
            "many k-means parts of the cluster, so a minority inside a "
            "cluster is not swamped; 1: equal shares per cluster only"
        ),
    )


OPERATORS = [FindDuplicates, SelectSubset]
