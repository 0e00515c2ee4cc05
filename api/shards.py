"""Embeddings over several workers: a view split into shards that
delegated operations run, one each, wherever ``fiftyone delegated launch``
runs against the same database and media.

The ``compute_embeddings`` operator queues the shards (this module never
touches FiftyOne's operators): :func:`plan_embedding_shards` validates the
request, splits the samples still to embed into ranges of sample ids of
equal counts and records them (:mod:`..shard_store`); each delegated
operation then calls :func:`run_embedding_shard` for its range. A shard
skips the samples that already have a vector, so one that died resumes
when its operation is queued again, and every sample is embedded once.
:func:`embedding_shards_status` says how far they are;
``compute_clusters`` and ``compute_embeddings`` refuse a field whose
shards have not all completed.
"""

import logging

from bson import ObjectId

import fiftyone as fo

from .. import shard_store
from ..core.devices import PRECISIONS
from ..core.embedders import EMBEDDERS
from ..core.schema import ParamError
from ..data import InputError
from .embeddings import (
    _check_args,
    _check_collection,
    _check_field,
    compute_embeddings,
)

__all__ = [
    "SHARD_EVERY",
    "cancel_embedding_shards",
    "check_no_pending_shards",
    "default_shards",
    "embedding_shards_status",
    "plan_embedding_shards",
    "record_shard_operation",
    "run_embedding_shard",
]

logger = logging.getLogger(__name__)

# The App form proposes one shard per this many samples above it
SHARD_EVERY = 20000
# ... and at most this many
MAX_DEFAULT_SHARDS = 32


def default_shards(n_samples):
    """The App form's default number of shards for a view of
    ``n_samples``: 1 up to :data:`SHARD_EVERY`, then one per
    :data:`SHARD_EVERY` samples, at most :data:`MAX_DEFAULT_SHARDS`."""
    if n_samples <= SHARD_EVERY:
        return 1
    return min(MAX_DEFAULT_SHARDS, -(-n_samples // SHARD_EVERY))


def check_shards(shards):
    """Raises a :class:`ParamError` unless ``shards`` is an integer >= 1;
    returns it."""
    if isinstance(shards, bool) or not isinstance(shards, int):
        raise ParamError(f"shards must be an integer; got {shards!r}")
    if shards < 1:
        raise ParamError(f"shards must be >= 1; got {shards}")
    return shards


def _check_request(samples, field, model, options, params):
    """The checks of ``compute_embeddings`` that need no model and no
    device (the workers resolve the device where they run); returns
    whether ``field`` exists."""
    EMBEDDERS.get(model)(**params)  # unknown model or parameter
    _check_args(
        field,
        options.get("batch_size"),
        options.get("num_workers"),
        options.get("skip_failures", True),
        options.get("overwrite", False),
    )
    precision = options.get("precision", "auto")
    if str(precision).strip().lower() not in PRECISIONS:
        raise ParamError(
            f"Unknown precision {precision!r}: use {', '.join(PRECISIONS)}"
        )
    _check_collection(samples)
    return _check_field(samples._dataset, field)


def _ranges(ids, shards):
    """Splits sorted ObjectIds into ``shards`` ranges of equal counts:
    ``(lo, hi)`` per shard (``None``: open end) and the counts."""
    n = len(ids)
    starts = [n * k // shards for k in range(shards)] + [n]
    ranges = []
    for k in range(shards):
        lo = ids[starts[k]] if k > 0 else None
        hi = ids[starts[k + 1]] if k < shards - 1 else None
        ranges.append((lo, hi))
    counts = [starts[k + 1] - starts[k] for k in range(shards)]
    return ranges, counts


def plan_embedding_shards(
    samples,
    embeddings_field,
    shards,
    model="open_clip",
    overwrite=False,
    **options,
):
    """Validates a sharded ``compute_embeddings`` request and records its
    shards, each ``queued``; the caller queues one delegated operation per
    shard (see the ``compute_embeddings`` operator).

    Args:
        samples: a FiftyOne image dataset or view
        embeddings_field: the vector field to write (created now if
            missing, so that the shards do not race to create it)
        shards: how many shards (>= 1, at most the number of samples to
            embed)
        model ("open_clip"): the embedder
        overwrite (False): whether samples that have a vector are embedded
            again: their vectors are cleared now, and the shards embed them
        **options: the other arguments of ``compute_embeddings``
            (``batch_size``, ``num_workers``, ``device``, ``precision``,
            ``skip_failures`` and the embedder's ``<model>__<param>``)

    Returns:
        a dict with ``embeddings_field``, ``shard_group`` (``None`` when
        there is nothing to embed), ``shards`` (a list of ``{"shard":
        index, "count": samples}``), ``to_embed`` and ``skipped``

    Raises:
        ParamError: on a bad ``shards`` or embedder parameter
        InputError: on a bad field or collection, more shards than samples
            to embed, or a field that another sharded run is writing
    """
    check_shards(shards)
    prefix = f"{model}__"
    params = {
        k[len(prefix) :]: v for k, v in options.items() if k.startswith(prefix)
    }
    options = dict(options, overwrite=overwrite)
    dataset = samples._dataset
    exists = _check_request(samples, embeddings_field, model, options, params)
    busy = shard_store.pending(dataset, embeddings_field)
    if busy:
        raise shard_store.busy_error(dataset, embeddings_field, busy)
    todo = samples
    if exists and not overwrite:
        todo = samples.exists(embeddings_field, False)
    ids = sorted(todo.values("_id"))
    result = dict(
        embeddings_field=embeddings_field,
        shard_group=None,
        shards=[],
        to_embed=len(ids),
        skipped=samples.count() - len(ids),
    )
    if not ids:
        return result
    if shards > len(ids):
        raise InputError(
            f"shards={shards} is more than the {len(ids):,} samples to "
            f"embed into '{embeddings_field}'; use at most {len(ids):,}"
        )
    if exists and overwrite:
        samples.clear_sample_field(embeddings_field)
    if not exists:
        dataset.add_sample_field(embeddings_field, fo.VectorField)
    ranges, counts = _ranges(ids, shards)
    group = shard_store.create(dataset, embeddings_field, ranges, counts)
    result["shard_group"] = group
    result["shards"] = [{"shard": k, "count": c} for k, c in enumerate(counts)]
    logger.info(
        "Split %d samples to embed into '%s' into %d shards (group %s)",
        len(ids),
        embeddings_field,
        shards,
        group,
    )
    return result


def record_shard_operation(samples, embeddings_field, shard_group, shard, op):
    """Records the id of the delegated operation queued for a shard."""
    doc = _shard_doc(samples, embeddings_field, shard_group, shard)
    shard_store.update(doc, operation_id=str(op))


def _shard_doc(samples, field, group, index):
    doc = shard_store.get(samples._dataset, field, group, index)
    if doc is None:
        raise InputError(
            f"Shard {index} of group '{group}' of field '{field}' is not "
            "known: its sharded run was cancelled, or replaced by another"
        )
    return doc


def _range_view(samples, doc):
    bounds = {}
    if doc["lo"] is not None:
        bounds["$gte"] = ObjectId(doc["lo"])
    if doc["hi"] is not None:
        bounds["$lt"] = ObjectId(doc["hi"])
    return samples.match({"_id": bounds}) if bounds else samples.view()


def run_embedding_shard(
    samples,
    embeddings_field,
    shard_group,
    shard,
    operation_id=None,
    progress=None,
    **kwargs,
):
    """Embeds the samples of one shard that have no vector yet (what each
    delegated operation of a sharded run calls).

    Args:
        samples: the collection the run was planned on
        embeddings_field: the vector field
        shard_group: the group's id (from :func:`plan_embedding_shards`)
        shard: the shard's index
        operation_id (None): the delegated operation running it
        progress (None): a ``progress(fraction, label)`` callable
        **kwargs: the other arguments of ``compute_embeddings`` (never
            ``overwrite``: a shard always resumes)

    Returns:
        the dict of ``compute_embeddings``, with ``shard`` and
        ``n_shards``
    """
    doc = _shard_doc(samples, embeddings_field, shard_group, shard)
    kwargs.pop("overwrite", None)
    running = shard_store.Running(doc, operation_id)
    try:
        out = compute_embeddings(
            _range_view(samples, doc),
            embeddings_field,
            progress=progress,
            _shard=doc,
            **kwargs,
        )
    except BaseException as e:
        running.end("failed", error=f"{type(e).__name__}: {e}")
        raise
    running.end(
        "completed",
        embedded=out["embedded"],
        skipped=out["skipped"],
        failed=out["failed"],
        error=None,
    )
    return dict(out, shard=shard, n_shards=doc["n_shards"])


def embedding_shards_status(samples, embeddings_field, count_vectors=True):
    """How far the shards of the field's sharded run are.

    Args:
        samples: a FiftyOne dataset or view
        embeddings_field: the vector field
        count_vectors (True): whether to count the samples that have a
            vector (a scan of the collection: leave it out when polling
            a large dataset often)

    Returns:
        a dict with ``embeddings_field``, ``shard_group`` (``None``
        without a sharded run), ``n_shards``, ``complete`` (every shard
        completed), ``pending`` (the indices of the others), ``shards``
        (per shard: ``shard``, ``state`` (``queued``, ``running``,
        ``stalled``: its worker died, ``failed`` or ``completed``),
        ``count``, ``embedded``, ``skipped``, ``failed``, ``attempts``,
        ``operation_id``, ``host``, ``pid``, ``error``), ``with_vector``
        and ``samples`` (counts in ``samples``; ``None`` without
        ``count_vectors``), and ``summary`` (a line)
    """
    docs = shard_store.current(samples._dataset, embeddings_field)
    keys = ("count", "embedded", "skipped", "failed", "attempts")
    keys += ("operation_id", "host", "pid", "error")
    shards = [
        dict(
            {k: d.get(k) for k in keys},
            shard=d["index"],
            state=shard_store.state(d),
        )
        for d in docs
    ]
    pending = [s["shard"] for s in shards if s["state"] != "completed"]
    out = dict(
        embeddings_field=embeddings_field,
        shard_group=docs[0]["group"] if docs else None,
        n_shards=len(docs),
        complete=not pending,
        pending=pending,
        shards=shards,
        samples=samples.count() if count_vectors else None,
        with_vector=(
            _with_vector(samples, embeddings_field) if count_vectors else None
        ),
    )
    done = len(docs) - len(pending)
    states = ", ".join(
        f"{s['shard']}: {s['state']}" for s in shards if s["shard"] in pending
    )
    out["summary"] = (
        f"No sharded run on '{embeddings_field}'"
        if not docs
        else f"{done}/{len(docs)} shards of '{embeddings_field}' completed"
        + (f"; pending {states}" if pending else "")
        + (
            f"; {out['with_vector']:,} of {out['samples']:,} samples have "
            "a vector"
            if count_vectors
            else ""
        )
    )
    return out


def _with_vector(samples, field):
    if field not in samples._dataset.get_field_schema():
        return 0
    return samples.exists(field).count()


def check_no_pending_shards(samples, embeddings_field):
    """Raises an :class:`InputError` naming the field and its pending
    shards if a sharded run is still writing ``embeddings_field``."""
    busy = shard_store.pending(samples._dataset, embeddings_field)
    if busy:
        raise shard_store.busy_error(samples._dataset, embeddings_field, busy)


def cancel_embedding_shards(samples, embeddings_field):
    """Drops the bookkeeping of the field's sharded run, so that other runs
    may use the field; the vectors written stay. Queued operations of its
    shards then fail without writing (mark them failed with ``fiftyone
    delegated fail`` first where they are running). Returns the number of
    shards dropped."""
    return shard_store.forget(samples._dataset, embeddings_field)
