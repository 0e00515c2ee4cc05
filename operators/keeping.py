"""Operators that keep clusters up with the dataset: assign new samples to
a run, and compare two runs."""

import fiftyone.operators.types as types

from .. import api
from ._common import (
    HeavyOperator,
    PluginOperator,
    add_dropdown_input,
    add_run_choice_input,
    form_params,
    light_config,
)
from ._execution import call_from_python, run_api
from ._results import action_output

_FORM_ONLY = ("no_runs", "target_notice")


class AssignClusters(HeavyOperator):
    CONFIG = (
        "assign_clusters",
        "Assign new samples to clusters",
        "Put samples a clustering run has not seen into its clusters",
    )

    def form(self, ctx):
        inputs = types.Object()
        run_key = add_run_choice_input(
            inputs, ctx, label="Clustering run", latest=True
        )
        if run_key is None:
            return types.Property(inputs)
        inputs.float(
            "novelty_factor",
            default=1.3,
            min=0.01,
            label="Novelty factor",
            description=(
                "A sample farther from its nearest cluster than its members "
                "usually are (median + factor x (99th percentile - "
                "median)) is novel and gets the noise id -1"
            ),
        )
        inputs.float(
            "recluster_above",
            min=0.01,
            max=1.0,
            label="Re-cluster above this novel share (optional)",
            description=(
                "If more new samples than this share are novel, assign "
                "nothing and compute the clustering again on the whole "
                "view as a new run"
            ),
        )
        inputs.str(
            "recluster_run_key",
            label="Key of the re-clustered run (optional)",
            description="Default <run_key>_reclustered",
        )
        inputs.view_target(
            ctx,
            action_description="Assign",
            default_target="DATASET",
            dataset_description="The samples of the dataset the run has "
            "not seen",
            current_view_description="The samples of the current view the "
            "run has not seen",
        )
        return self.finish_form(inputs, ctx)

    def execute(self, ctx):
        params = form_params(ctx, _FORM_ONLY, drop_blank=True)
        return run_api(
            ctx,
            api.assign_clusters,
            ctx.target_view(),
            params,
            output=lambda out: action_output(
                "New samples assigned",
                out,
                fields="Fields written (new samples only)",
            ),
        )

    def __call__(
        self,
        sample_collection,
        run_key,
        novelty_factor=1.3,
        recluster_above=None,
        recluster_run_key=None,
        delegate=False,
    ):
        """Assigns the samples a clustering run has not seen to its
        clusters (see :func:`api.assign_clusters`).

        Args:
            sample_collection: a dataset or view holding the new samples
            run_key: a clustering run
            novelty_factor (1.3): how far beyond a cluster's usual
                distances a sample is novel
            recluster_above (None): a novel share above which the view is
                clustered again as a new run instead
            recluster_run_key (None): that run's key
            delegate (False): whether to queue it for a worker

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult`
        """
        return call_from_python(self, locals())


class CompareClusteringRuns(PluginOperator):
    @property
    def config(self):
        return light_config(
            "compare_clustering_runs",
            "Compare clustering runs",
            "ARI, AMI and what became of each cluster between two runs",
        )

    def form(self, ctx):
        inputs = types.Object()
        keys = api.list_clustering_runs(ctx.dataset)
        if not keys:
            add_run_choice_input(inputs, ctx)  # says there is none
            return types.Property(inputs)
        first = keys[-2] if len(keys) > 1 else keys[0]
        add_dropdown_input(
            inputs,
            "run_key",
            keys,
            first,
            "First run",
            "e.g. the older run",
            required=True,
        )
        run_key = ctx.params.get("run_key", first)
        others = [k for k in keys if k != run_key] or keys
        add_dropdown_input(
            inputs,
            "other_run_key",
            others,
            others[-1],
            "Second run",
            "The run to compare the first with",
            required=True,
        )
        return types.Property(
            inputs, view=types.View(label="Compare clustering runs")
        )

    def execute(self, ctx):
        params = form_params(ctx, _FORM_ONLY, drop_blank=True)
        return api.compare_clustering_runs(ctx.target_view(), **params)

    def resolve_output(self, ctx):
        out = ctx.results or {}
        rows = [
            f"| {c['run']} | {c['id']} | {c['size']:,} | {c['best_match']} "
            f"| {c['jaccard']:.2f} | {c['verdict']} |"
            for c in out.get("clusters", [])
        ]
        table = (
            "| run | cluster | size | best match | Jaccard | verdict |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows)
        )
        return action_output("Runs compared", out, extra=[table])

    def __call__(self, sample_collection, run_key, other_run_key):
        """Compares two clustering runs on their shared samples (see
        :func:`api.compare_clustering_runs`).

        Args:
            sample_collection: a dataset or view
            run_key: the first run
            other_run_key: the second run

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult` whose
            ``result`` holds ``ari``, ``ami``, ``clusters``, ``events``
            and ``flows``
        """
        return call_from_python(self, locals())


OPERATORS = [AssignClusters, CompareClusteringRuns]
