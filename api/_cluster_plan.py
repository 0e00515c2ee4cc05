"""The plan of a clustering run: a request validated against the schemas
and the dataset before any I/O (see :func:`plan_clustering`)."""

import dataclasses
from typing import Optional

import numpy as np

from .. import runs
from ..core import methods, schema
from ..core import reduce as reduce_
from ..core.embedders import EMBEDDERS
from ..data import InputError, check_sample_collection, ensure_new_field
from .embeddings import EMBED_DEFAULTS
from .projections import check_new_brain_key
from .shards import check_no_pending_shards


@dataclasses.dataclass(frozen=True)
class ClusteringPlan:
    """A validated clustering request: everything a run needs to know
    before it reads anything."""

    run_key: str
    embeddings_field: str
    method: str
    method_params: dict
    normalize: bool
    reduce: str
    reduce_params: dict
    skip_missing: bool
    cluster_field: str
    score_kind: str
    model: Optional[str] = None
    embed_options: Optional[dict] = None
    projection_brain_key: Optional[str] = None
    stability_resamples: int = 0

    @property
    def score_field(self):
        return f"{self.run_key}_{self.score_kind}"

    @property
    def fields(self):
        """The sample fields the run writes."""
        return [self.cluster_field, self.score_field]

    def weights(self):
        """The stages of the run and their shares of its progress."""
        w = {"reading": 2, "reducing": 4, "clustering": 4, "writing": 2}
        if self.model is not None:
            w = dict(embedding=12, **w)
        if self.projection_brain_key is not None:
            w["projecting"] = 4
        if self.stability_resamples:
            w["stability"] = 2 * self.stability_resamples
        return w

    def config(self, method_params, n_samples):
        """The config stored with the run."""
        return dict(
            method=self.method,
            params=method_params,
            embeddings_field=self.embeddings_field,
            cluster_field=self.cluster_field,
            score_field=self.score_field,
            score_kind=self.score_kind,
            normalize=self.normalize,
            reduce=self.reduce,
            reduce_params=self.reduce_params,
            skip_missing=self.skip_missing,
            model=self.model,
            n_samples=n_samples,
            fields=self.fields,
            stability_resamples=self.stability_resamples,
        )


def plan_clustering(
    samples,
    run_key,
    embeddings_field,
    method="hdbscan",
    cluster_field=None,
    normalize=True,
    reduce="auto",
    skip_missing=False,
    model=None,
    embed_options=None,
    projection_brain_key=None,
    stability_resamples=0,
    **params,
):
    """Validates a clustering request against its schemas and the dataset,
    before any I/O; see :func:`compute_clusters` for the arguments.

    Returns:
        a :class:`ClusteringPlan`

    Raises:
        InputError: on a taken run key or field, or options that do not apply
        ParamError: on an unknown component, parameter or value
    """
    check_sample_collection(samples, "compute_clusters writes sample fields")
    _check_flags(normalize, skip_missing, stability_resamples)
    embed_options = _check_embed_options(model, embed_options or {})
    check_no_pending_shards(samples, embeddings_field)
    method_cls = methods.METHODS.get(method)
    reduce_name = default_reduce(method_cls, reduce)
    chosen = [
        (methods.METHODS, method),
        (reduce_.REDUCERS, None if reduce_name == "none" else reduce_name),
    ]
    if model is not None:
        chosen.append((EMBEDDERS, model))
        EMBEDDERS.get(model)  # an unknown model fails here
    method_params, reduce_params, *embedder_params = schema.split_params(
        params, *chosen
    )
    if model is not None:
        resolved = EMBEDDERS.resolve(model, embedder_params[0])
        embed_options.update({f"{model}__{k}": v for k, v in resolved.items()})
    method_params = methods.METHODS.resolve(method, method_params)
    if reduce_name != "none":
        reduce_params = reduce_.REDUCERS.resolve(reduce_name, reduce_params)
    method_cls(**method_params)  # cross-parameter checks

    plan = ClusteringPlan(
        run_key=run_key,
        embeddings_field=embeddings_field,
        method=method,
        method_params=method_params,
        normalize=bool(normalize),
        reduce=reduce_name,
        reduce_params=reduce_params,
        skip_missing=bool(skip_missing),
        cluster_field=cluster_field or f"{run_key}_cluster",
        score_kind=method_cls.score_kind,
        model=model,
        embed_options=embed_options if model is not None else None,
        projection_brain_key=projection_brain_key,
        stability_resamples=int(stability_resamples or 0),
    )
    check_names(samples, plan)
    return plan


def check_names(samples, plan):
    """Raises an :class:`InputError` if the run key, a field or the brain
    key of ``plan`` is invalid or taken."""
    runs.check_new_key(samples, plan.run_key)
    if plan.cluster_field == plan.score_field:
        raise InputError(
            f"cluster_field '{plan.cluster_field}' is the field of the "
            f"run's {plan.score_kind} scores: choose another cluster_field"
        )
    for field in plan.fields:
        ensure_new_field(samples._dataset, field)
    if plan.projection_brain_key is not None:
        check_new_brain_key(samples, plan.projection_brain_key)


def default_reduce(method_cls, reduce):
    """The reduction a run uses: ``"auto"`` is UMAP for density-based
    methods and none for the others; an unknown name fails."""
    if reduce == "auto":
        return "umap" if method_cls.density_based else "none"
    if reduce != "none":
        reduce_.REDUCERS.get(reduce)
    return reduce


def _check_embed_options(model, options):
    """The embedding options; without a model, any that is not its default
    is refused, since it would do nothing."""
    if model is not None:
        return dict(options)
    given = [
        f"{k}={v!r}" for k, v in options.items() if v != EMBED_DEFAULTS.get(k)
    ]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise InputError(
            f"{', '.join(given)} only {verb} when embeddings are "
            "computed: pass model= as well, or leave it out"
        )
    return {}


def _check_flags(normalize, skip_missing, stability_resamples):
    for name, value in (
        ("normalize", normalize),
        ("skip_missing", skip_missing),
    ):
        if not isinstance(value, (bool, np.bool_)):
            raise InputError(f"{name} must be True or False; got {value!r}")
    _check_resamples(stability_resamples)


def _check_resamples(value):
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not 0 <= value <= 100
    ):
        raise InputError(
            "stability_resamples must be a whole number from 0 (off) to "
            f"100; got {value!r}"
        )
