"""Queueing the shards of a sharded ``compute_embeddings`` run: one
delegated operation per shard, each with the request it was given (same
dataset, view and target) plus its shard, for any number of
``fiftyone delegated launch`` workers to take (see :mod:`..api.shards`)."""

import logging

from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionContext

from .. import api

logger = logging.getLogger(__name__)

# The params of a request that only the coordinating call uses
_NOT_FOR_SHARDS = ("shards", "overwrite", "delegate", "request_delegation")


def shard_label(field, shard, n_shards):
    """The label ``fiftyone delegated list`` shows for a shard."""
    return f"compute_embeddings:{field}:shard-{shard + 1}/{n_shards}"


def queue_shards(ctx, uri, samples, shards, progress=None, **kwargs):
    """Plans the shards (:func:`api.plan_embedding_shards`) and queues one
    delegated operation of ``uri`` per shard.

    Args:
        ctx: the execution context of the coordinating call
        uri: the operator that runs each shard
        samples: the target view
        shards: the number of shards
        progress (None): a ``progress(fraction, label)`` callable
        **kwargs: the arguments of ``compute_embeddings``

    Returns:
        the plan's dict, with ``operations`` (the ids of the queued
        operations, by shard) and ``summary`` (lines)
    """
    plan = api.plan_embedding_shards(samples, shards=shards, **kwargs)
    field = plan["embeddings_field"]
    base = {k: v for k, v in ctx.params.items() if k not in _NOT_FOR_SHARDS}
    base.update(embeddings_field=field)
    service = DelegatedOperationService()
    operations = []
    n = len(plan["shards"])
    for item in plan["shards"]:
        request = dict(ctx.request_params)
        request.pop("request_delegation", None)
        request["delegated"] = True
        request["params"] = dict(
            base, shard_group=plan["shard_group"], shard=item["shard"]
        )
        op = service.queue_operation(
            operator=uri,
            label=shard_label(field, item["shard"], n),
            context=ExecutionContext(request_params=request).serialize(),
            rerunnable=True,
        )
        api.record_shard_operation(
            samples, field, plan["shard_group"], item["shard"], op.id
        )
        operations.append(str(op.id))
        if progress is not None:
            progress(len(operations) / n, "queueing")
    plan["operations"] = operations
    plan["summary"] = _summary(plan)
    logger.info("%s", " ".join(plan["summary"]))
    return plan


def _summary(plan):
    field = plan["embeddings_field"]
    if not plan["operations"]:
        return [
            f"All {plan['skipped']:,} samples already have '{field}': "
            "nothing to queue"
        ]
    return [
        f"Queued {len(plan['operations'])} shards of "
        f"{plan['to_embed']:,} samples to embed into '{field}' "
        f"({plan['skipped']:,} already had a vector).",
        "Each `fiftyone delegated launch` worker sharing this database "
        "and the media takes one at a time; `fiftyone delegated list` "
        "shows their progress and api.embedding_shards_status(samples, "
        f"'{field}') says when all are complete.",
    ]
