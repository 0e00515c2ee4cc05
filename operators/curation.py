"""Operators that turn a clustering run into lists of samples to look at:
the label audit and the outlier scores."""

import fiftyone.operators.types as types

from .. import api, runs
from ..data import RESERVED_FIELDS
from ..core.label_audit import AUDITS
from ..core.outliers import OUTLIER_SCORES
from ._common import (
    HeavyOperator,
    add_choice_input,
    add_dropdown_input,
    add_run_choice_input,
    add_schema_inputs,
    form_params,
)
from ._execution import call_from_python, run_api, timed
from ._results import action_output, code

_FORM_ONLY = ("no_runs", "no_labels", "target_notice")


def _label_fields(ctx):
    """The dataset's ``Classification`` fields, then its string fields
    (not FiftyOne's own, nor those a clustering run wrote)."""
    import fiftyone as fo

    owned = set()
    for run_key in api.list_clustering_runs(ctx.dataset):
        owned.update(runs.get_config(ctx.dataset, run_key).get("fields", []))
    labels, strings = [], []
    for name, field in ctx.dataset.get_field_schema().items():
        if name in RESERVED_FIELDS or name in owned:
            continue
        if isinstance(field, fo.EmbeddedDocumentField) and issubclass(
            field.document_type, fo.Classification
        ):
            labels.append(name)
        elif isinstance(field, fo.StringField):
            strings.append(name)
    return labels + strings


def _run_input(inputs, ctx):
    """The clustering run, the latest by default; ``None`` (and a
    warning) when the dataset has none."""
    return add_run_choice_input(
        inputs, ctx, label="Clustering run", latest=True
    )


def _run_target(inputs, ctx, run_key, action):
    """The samples: by default every sample of the run, whatever the grid
    shows, and the form says so."""
    inputs.view_target(
        ctx,
        action_description=action,
        default_target="DATASET",
        dataset_description=f"Every sample of run '{run_key}'",
        current_view_description=(
            f"Only the samples of run '{run_key}' in the current view"
        ),
    )


class AuditLabels(HeavyOperator):
    CONFIG = (
        "audit_labels",
        "Audit labels",
        "Find samples whose label disagrees with their neighbours'",
    )

    def form(self, ctx):
        inputs = types.Object()
        run_key = _run_input(inputs, ctx)
        if run_key is None:
            return types.Property(inputs)
        fields = _label_fields(ctx)
        if not fields:
            inputs.view(
                "no_labels",
                types.Warning(
                    label="No label field",
                    description="Add a Classification or string field",
                ),
            )
            return types.Property(inputs)
        add_dropdown_input(
            inputs,
            "label_field",
            fields,
            fields[0],
            "Label field",
            "A Classification or string field whose labels to audit",
            required=True,
        )
        inputs.float(
            "threshold",
            default=0.8,
            min=0.01,
            max=1.0,
            label="Suspicion threshold",
            description=(
                "Samples at or above it are suspects (0.8: their label "
                "gets under a fifth of their neighbourhood's vote)"
            ),
        )
        inputs.str("tag", label="Tag suspects (optional)")
        add_choice_input(
            inputs, "method", AUDITS, "trust_vote", "Method", "How to vote"
        )
        add_schema_inputs(
            inputs, AUDITS, ctx.params.get("method") or "trust_vote", ctx
        )
        _run_target(inputs, ctx, run_key, "Audit")
        return self.finish_form(inputs, ctx)

    def execute(self, ctx):
        params = form_params(ctx, _FORM_ONLY, drop_blank=True)
        return run_api(
            ctx,
            timed(api.audit_labels),
            ctx.target_view(),
            _unprefixed(params, ctx.params.get("method") or "trust_vote"),
            output=lambda out: action_output(
                "Labels audited",
                out,
                f"{out['n_suspects']:,} suspects of {out['n_samples']:,} "
                f"samples in run {code(out['run_key'])}",
            ),
        )

    def __call__(
        self,
        sample_collection,
        run_key,
        label_field,
        threshold=0.8,
        method="trust_vote",
        tag=None,
        delegate=False,
        **params,
    ):
        """Audits the labels of a clustering run's samples (see
        :func:`api.audit_labels`).

        Args:
            sample_collection: a dataset or view
            run_key: a clustering run
            label_field: a ``Classification`` or string field
            threshold (0.8): the suspicion at which a sample is a suspect
            method ("trust_vote"): the audit method
            tag (None): also tag the suspects
            delegate (False): whether to queue it for a worker
            **params: the method's parameters (``n_neighbors``, ...)

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult`
        """
        return call_from_python(self, locals())


class ComputeOutliers(HeavyOperator):
    CONFIG = (
        "compute_outliers",
        "Compute outliers",
        "Score how unusual each sample of a clustering run is",
    )

    def form(self, ctx):
        inputs = types.Object()
        run_key = _run_input(inputs, ctx)
        if run_key is None:
            return types.Property(inputs)
        inputs.int(
            "top",
            min=1,
            label="Top samples",
            description=(
                "How many of the most unusual samples the saved view "
                "holds; empty: 1% of the samples"
            ),
        )
        inputs.str("tag", label="Tag the top samples (optional)")
        add_choice_input(
            inputs,
            "method",
            OUTLIER_SCORES,
            "relative_distance",
            "Score",
            "How to score",
        )
        add_schema_inputs(
            inputs,
            OUTLIER_SCORES,
            ctx.params.get("method") or "relative_distance",
            ctx,
        )
        _run_target(inputs, ctx, run_key, "Score")
        return self.finish_form(inputs, ctx)

    def execute(self, ctx):
        params = form_params(ctx, _FORM_ONLY, drop_blank=True)
        method = ctx.params.get("method") or "relative_distance"
        return run_api(
            ctx,
            timed(api.compute_outliers),
            ctx.target_view(),
            _unprefixed(params, method),
            output=lambda out: action_output(
                "Outliers scored",
                out,
                f"{out['n_samples']:,} samples of run "
                f"{code(out['run_key'])}, the top "
                f"{out['config']['top']:,} in the saved view",
            ),
        )

    def __call__(
        self,
        sample_collection,
        run_key,
        method="relative_distance",
        top=None,
        tag=None,
        delegate=False,
        **params,
    ):
        """Scores how unusual each sample of a clustering run is (see
        :func:`api.compute_outliers`).

        Args:
            sample_collection: a dataset or view
            run_key: a clustering run
            method ("relative_distance"): the score
            top (None): samples in the saved view (default 1%)
            tag (None): also tag the top samples
            delegate (False): whether to queue it for a worker
            **params: the score's parameters (``n_neighbors``)

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult`
        """
        return call_from_python(self, locals())


def _unprefixed(params, method):
    """The form's ``<method>__<param>`` entries as the API's ``param``;
    other methods' entries dropped."""
    out = {}
    for key, value in params.items():
        head, sep, name = key.partition("__")
        if not sep:
            out[key] = value
        elif head == method:
            out[name] = value
    return out


OPERATORS = [AuditLabels, ComputeOutliers]
