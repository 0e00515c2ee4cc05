"""The bookkeeping of sharded embedding runs, in the database beside the
claims (:mod:`.claims`).

A sharded run of ``compute_embeddings`` splits the samples to embed into
ranges of sample ids, one per shard, each run by a delegated operation of
its own. The collection :data:`COLLECTION` holds, per dataset and field,
one head document naming the field's current *group* of shards, and one
document per shard: its id range, its state (``queued``, ``running``,
``completed``, ``failed``), the delegated operation that runs it, the
worker (host, process, a heartbeat) and its counts. The head is replaced
atomically, so two callers cannot both start a group on one field while
shards of another are pending.
"""

import datetime
import os
import socket
import threading
import uuid

from pymongo.errors import DuplicateKeyError

import fiftyone.core.odm as odm

from .claims import HEARTBEAT_S, owner_is_dead
from .data import InputError

COLLECTION = "curate_clustering_shards"

PENDING = ("queued", "running", "failed")

_HOST = socket.gethostname()


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _coll():
    return odm.get_db_conn()[COLLECTION]


def _head_id(dataset, field):
    return f"{dataset._doc.id}:{field}"


def _shard_id(dataset, field, group, index):
    return f"{dataset._doc.id}:{field}:{group}:{index}"


def current(dataset, field):
    """The shard documents of the field's current group, by index
    (``[]`` when there is none)."""
    head = _coll().find_one({"_id": _head_id(dataset, field)})
    if head is None:
        return []
    return list(
        _coll()
        .find({"head": head["_id"], "group": head["group"]})
        .sort("index", 1)
    )


def pending(dataset, field):
    """The shards of the field's current group that have not completed."""
    return [d for d in current(dataset, field) if d["state"] != "completed"]


def describe(docs):
    """Shards in words, e.g. ``"2/4 (running), 3/4 (queued)"``."""
    return ", ".join(
        f"{d['index'] + 1}/{d['n_shards']} ({state(d)})" for d in docs
    )


def state(doc):
    """A shard's state, ``running`` becoming ``stalled`` when its worker
    died (its process is gone on this host, or its heartbeat stopped)."""
    if doc["state"] == "running" and owner_is_dead(doc):
        return "stalled"
    return doc["state"]


def create(dataset, field, ranges, counts):
    """Starts a new group of shards on ``field``: one per id range, all
    ``queued``; returns the group's id.

    Args:
        dataset: the dataset
        field: the embeddings field
        ranges: ``(lo, hi)`` ObjectIds per shard (``None``: open end)
        counts: the samples each shard has to embed

    Raises:
        InputError: if shards of another group are pending on the field
    """
    head_id = _head_id(dataset, field)
    group = uuid.uuid4().hex[:12]
    old = _coll().find_one({"_id": head_id})
    busy = pending(dataset, field) if old is not None else []
    if busy:
        raise busy_error(dataset, field, busy)
    head = dict(_id=head_id, group=group, created_at=_now())
    if old is None:
        try:
            _coll().insert_one(head)
        except DuplicateKeyError:
            raise busy_error(dataset, field, []) from None
    else:
        done = _coll().replace_one(
            {"_id": head_id, "group": old["group"]}, head
        )
        if done.matched_count == 0:
            raise busy_error(dataset, field, [])
        _coll().delete_many({"head": head_id, "group": old["group"]})
    docs = [
        dict(
            _id=_shard_id(dataset, field, group, i),
            head=head_id,
            group=group,
            index=i,
            n_shards=len(ranges),
            field=field,
            lo=lo,
            hi=hi,
            count=int(count),
            state="queued",
            operation_id=None,
            attempts=0,
            created_at=_now(),
        )
        for i, ((lo, hi), count) in enumerate(zip(ranges, counts))
    ]
    _coll().insert_many(docs)
    return group


def busy_error(dataset, field, docs):
    """The :class:`InputError` of a field that shards are writing."""
    which = f": shards {describe(docs)}" if docs else ""
    return InputError(
        f"Field '{field}' of dataset '{dataset.name}' is being written by "
        f"a sharded compute_embeddings run{which}. Wait until every shard "
        "has completed (api.embedding_shards_status shows them; a failed "
        "or stalled shard resumes with `fiftyone delegated rerun "
        "<operation id>`), or drop the run's bookkeeping with "
        "api.cancel_embedding_shards"
    )


def get(dataset, field, group, index):
    """The document of one shard, or ``None``."""
    return _coll().find_one({"_id": _shard_id(dataset, field, group, index)})


def update(doc, **values):
    _coll().update_one({"_id": doc["_id"]}, {"$set": values})


class Running:
    """Marks a shard ``running`` by this process, with a heartbeat, until
    :meth:`end` records how it ended."""

    def __init__(self, doc, operation_id=None):
        self.doc = doc
        self._stop = threading.Event()
        values = dict(
            state="running",
            host=_HOST,
            pid=os.getpid(),
            started_at=_now(),
            alive_at=_now(),
        )
        if operation_id is not None:
            values["operation_id"] = str(operation_id)
        _coll().update_one(
            {"_id": doc["_id"]},
            {"$set": values, "$inc": {"attempts": 1}},
        )
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self):
        while not self._stop.wait(HEARTBEAT_S):
            try:
                update(self.doc, alive_at=_now())
            except Exception:  # a missed beat must not stop the shard
                pass

    def end(self, state, **values):
        self._stop.set()
        update(self.doc, state=state, finished_at=_now(), **values)


def forget(dataset, field):
    """Deletes the bookkeeping of the field's shards; returns how many
    shard documents were deleted."""
    head_id = _head_id(dataset, field)
    done = _coll().delete_many({"head": head_id})
    _coll().delete_one({"_id": head_id})
    return done.deleted_count
