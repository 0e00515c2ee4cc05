"""Claims: a run key and the fields a run will own, taken atomically in the
database before any work, so that a second caller sees them.

A claim is one document per name (``run:<key>``, ``field:<name>``) in the
collection :data:`COLLECTION` of FiftyOne's database, whose ``_id`` makes it
unique: two callers cannot both insert it, whatever process or machine they
run on. A claim records its owner (host, process, a heartbeat) and the
phase its run has reached. It is released when the call ends, whether the
call succeeded or rolled back.

A process killed mid-run leaves its claim behind. The next claim on the same
dataset finds it, sees that its owner is dead (its process is gone on this
host, or its heartbeat stopped), and repairs the dataset: it waits for (or
stops) a server-side write still running from the dead process, removes the
values and fields the dead run was writing, and a run it had registered, then
releases the claim and says what it did.
"""

import contextlib
import datetime
import logging
import os
import socket
import threading
import time
import uuid

from pymongo.errors import BulkWriteError

import fiftyone.core.odm as odm

from .runs import committed
from .data import (
    InputError,
    remove_fields,
    temporary_collections,
    unset_values,
)

logger = logging.getLogger(__name__)

COLLECTION = "curate_clustering_claims"

# A claim whose heartbeat is older than this belongs to a dead process
# (claims of this host are checked by process id at once)
STALE_AFTER_S = 300.0
HEARTBEAT_S = 30.0
# The longest a repair spends stopping a dead process's server-side writes
WAIT_FOR_WRITES_S = 60.0

_HOST = socket.gethostname()


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _coll():
    return odm.get_db_conn()[COLLECTION]


def _dataset_id(dataset):
    return str(dataset._doc.id)


class Claim:
    """The names a call holds; see :func:`claim`."""

    def __init__(self, dataset, run_key, fields, token):
        self.dataset = dataset
        self.run_key = run_key
        self.fields = list(fields)
        self.token = token
        self.repaired = []
        self._stop = threading.Event()
        self._thread = None

    def set_phase(self, phase, values=None, views=None):
        """Records how far the run has come (``claimed``, ``writing``,
        ``registering``; ``committing`` while a call that edits a run
        saves its record there, with this claim's token; ``done`` once
        nothing is left to undo).

        ``values`` names fields that already exist and receive values on
        some samples only (the samples a write's temporary collection,
        tagged with this claim's token, holds): a repair unsets them on
        those samples, where :func:`claim`'s fields are removed whole.
        ``views`` names the saved views the call writes, which a repair
        deletes."""
        update = {"phase": phase, "alive_at": _now()}
        if values is not None:
            update["values"] = list(values)
        if views is not None:
            update["views"] = list(views)
        _coll().update_many({"token": self.token}, {"$set": update})

    def _beat(self):
        while not self._stop.wait(HEARTBEAT_S):
            try:
                _coll().update_many(
                    {"token": self.token}, {"$set": {"alive_at": _now()}}
                )
            except Exception as e:  # a missed beat must not stop the run
                logger.debug("Heartbeat failed: %s", e)

    def start(self):
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def release(self):
        self._stop.set()
        _coll().delete_many({"token": self.token})


@contextlib.contextmanager
def claim(samples, run_key, fields, edits=None):
    """Claims a run key and the fields its run will write, for the duration
    of the ``with`` block.

    Claims left by dead processes on this dataset are repaired first (see
    the module's docstring); the claim's ``repaired`` lists what was done.

    Args:
        samples: a FiftyOne dataset or view
        run_key: the run key (``None`` to claim fields only)
        fields: the names of the sample fields the run will own
        edits (None): the key of an existing run whose stored results this
            call changes (a curation action); a second call that edits it
            waits its turn by failing, and a repair never deletes it

    Raises:
        InputError: if another live call holds the run key or one of the
            fields
    """
    dataset = samples._dataset
    repaired = repair_dead_claims(dataset)
    token = uuid.uuid4().hex[:12]
    docs = _claim_docs(dataset, run_key, fields, token, edits)
    try:
        _coll().insert_many(docs, ordered=True)
    except BulkWriteError as e:
        _coll().delete_many({"token": token})
        raise _taken(dataset, e) from None
    held = Claim(dataset, run_key, fields, token)
    held.repaired = repaired
    held.start()
    try:
        yield held
    finally:
        held.release()


def _claim_docs(dataset, run_key, fields, token, edits=None):
    base = dict(
        dataset_id=_dataset_id(dataset),
        token=token,
        run_key=run_key,
        edits=edits,
        fields=list(fields),
        phase="claimed",
        host=_HOST,
        pid=os.getpid(),
        started_at=_now(),
        alive_at=_now(),
    )
    names = ([f"run:{run_key}"] if run_key else []) + [
        f"field:{f}" for f in fields
    ]
    if edits:
        names.append(f"edit:{edits}")
    return [
        dict(base, _id=f"{base['dataset_id']}:{name}", name=name)
        for name in names
    ]


def _taken(dataset, error):
    """An :class:`InputError` naming the claim another call holds."""
    errors = (error.details or {}).get("writeErrors") or [{}]
    taken_id = (errors[0].get("keyValue") or {}).get("_id")
    other = _coll().find_one({"_id": taken_id}) or {}
    name = other.get("name", "a name this run needs")
    kind, _, value = name.partition(":")
    if kind == "edit":
        what, by = f"Run '{value}'", "another call ("
    else:
        by = f"another run ('{other.get('run_key') or 'an action'}', "
        what = f"Run key '{value}'" if kind == "run" else f"Field '{value}'"
    return InputError(
        f"{what} is being written by {by}started "
        f"{other.get('started_at')} UTC by process {other.get('pid')} on "
        f"{other.get('host')}) on dataset '{dataset.name}'; wait for it to "
        "finish, or choose another name"
    )


def owner_is_dead(doc):
    """Whether the process that wrote ``doc`` (its ``host``, ``pid`` and
    ``alive_at`` heartbeat) is dead: gone on this host, or silent for
    :data:`STALE_AFTER_S` elsewhere."""
    if doc.get("host") == _HOST:
        try:
            os.kill(int(doc["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, KeyError):
            return False
        return False
    alive_at = doc.get("alive_at") or doc.get("started_at")
    return (_now() - alive_at).total_seconds() > STALE_AFTER_S


def repair_dead_claims(dataset):
    """Repairs the runs that dead processes left half-written on
    ``dataset``; returns one sentence per repaired run."""
    docs = list(_coll().find({"dataset_id": _dataset_id(dataset)}))
    dead = {}
    for doc in docs:
        if owner_is_dead(doc):
            dead.setdefault(doc["token"], doc)
    done = []
    for token, doc in dead.items():
        done.append(_repair(dataset, token, doc))
        _coll().delete_many({"token": token})
    for message in done:
        logger.warning("%s", message)
    return done


def _repair(dataset, token, doc):
    """Undoes what the dead claim ``doc`` was writing."""
    phase = doc.get("phase")
    if phase == "done" or (
        phase == "committing" and committed(dataset, doc.get("edits"), token)
    ):  # died after its last write
        _end_writes(dataset, token, [])
        return (
            f"Released the claim of a finished call on dataset "
            f"'{dataset.name}' whose process {doc.get('pid')} died"
        )
    fields = doc.get("fields") or []
    values = doc.get("values") or []
    n_unset = _end_writes(dataset, token, fields + values, values)
    dataset.reload()
    run_key = doc.get("run_key")
    removed_run = False
    if run_key and run_key in dataset.list_runs():
        dataset.delete_run(run_key)
        removed_run = True
    remove_fields(dataset, fields)
    views = [v for v in doc.get("views") or [] if dataset.has_saved_view(v)]
    for view_name in views:
        dataset.delete_saved_view(view_name)
    name = run_key or doc.get("edits")
    return (
        f"Repaired run '{name}' on dataset '{dataset.name}', interrupted "
        f"in phase '{doc.get('phase')}' (process {doc.get('pid')} on "
        f"{doc.get('host')} died): removed "
        + ("the half-registered run and " if removed_run else "")
        + f"the values of {', '.join(fields) or 'no field'}"
        + (
            f" and those of {', '.join(values)} on the {n_unset} samples it "
            "was writing"
            if values
            else ""
        )
        + (f", and the saved views {', '.join(views)}" if views else "")
    )


def _end_writes(dataset, token, fields, values=()):
    """Stops the server-side writes that a dead claim left running (a
    ``$merge`` goes on after its client died, as per-document updates that
    set the claimed fields), unsets ``values`` on the samples its
    temporary collections hold, and drops them; returns how many samples
    it unset."""
    coll = dataset._sample_collection
    deadline = time.monotonic() + WAIT_FOR_WRITES_S
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        ops = _writes_of(coll, fields)
        quiet = 0 if ops else quiet + 1
        for opid in {op["opid"] for op in ops}:
            coll.database.client.admin.command("killOp", op=opid)
        time.sleep(0.1)
    n = 0
    for name in temporary_collections(dataset, token):
        if values:
            tmp = coll.database[name]
            ids = [d["_id"] for d in tmp.find({}, {"_id": 1})]
            unset_values(dataset, ids, values)
            n += len(ids)
        coll.database.drop_collection(name)
    return n


def _writes_of(coll, fields):
    """The updates in progress on ``coll`` that set one of ``fields``."""
    ns = f"{coll.database.name}.{coll.name}"
    ops = coll.database.client.admin.aggregate(
        [{"$currentOp": {"allUsers": True}}, {"$match": {"ns": ns}}]
    )
    out = []
    for op in ops:
        update = (op.get("command") or {}).get("u") or {}
        changed = (
            update.get("$set", update) if isinstance(update, dict) else {}
        )
        if set(changed) & set(fields):
            out.append(op)
    return out
