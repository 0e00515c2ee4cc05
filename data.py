"""Bulk reads and writes between FiftyOne collections and numpy arrays.

Embeddings are read once, straight from the database, as one float32
matrix: only the vector field is projected, and FiftyOne's stored binary
arrays (zlib-compressed ``.npy`` bytes) are decoded without going through
Python lists or per-sample documents. Per-sample results are written back
server-side: the values go into a temporary collection with one bulk insert
and are merged into the samples by ``_id`` in a single aggregation, which is
several times faster than one update per sample.
"""

import io
import logging
import re
import time
import uuid
import zlib
from datetime import datetime, timezone

import numpy as np
from bson import Binary
from pymongo import UpdateMany

import fiftyone.core.fields as fof

logger = logging.getLogger(__name__)

_WRITE_CHUNK = 50000

# Sample fields FiftyOne gives every sample (names starting with "_" are
# reserved too)
RESERVED_FIELDS = frozenset(
    ("id", "filepath", "tags", "metadata", "created_at", "last_modified_at")
    + ("media_type", "frames")
)


class InputError(ValueError):
    """Bad user input, detected before anything was written."""


class Rollback:
    """Undoes what a call wrote, if the call does not finish.

    Each step that changes the database registers how to undo it with
    :meth:`push`, right after it succeeded. If the ``with`` block raises
    (``KeyboardInterrupt`` included), the undo actions run newest first and
    the exception propagates; an undo action that fails is logged and the
    others still run. If the block finishes, nothing is undone. An undo
    action removes only what its own step created.

    Example::

        with Rollback() as undo:
            dataset.add_sample_field(name, fo.StringField)
            undo.push(remove_fields, dataset, [name])
            ...
    """

    def __init__(self):
        self._undo = []

    def push(self, fn, *args, **kwargs):
        """Registers ``fn(*args, **kwargs)`` as the undo of the last
        step."""
        self._undo.append((fn, args, kwargs))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        undo, self._undo = self._undo, []
        if exc_type is None:
            return False
        for fn, args, kwargs in reversed(undo):
            try:
                fn(*args, **kwargs)
            except Exception:  # the other undo actions must still run
                logger.exception("Could not undo %s", fn.__name__)
        return False


def check_sample_collection(samples, action):
    """Raises an :class:`InputError` unless ``samples`` is a dataset or a
    view of its samples (not patches, frames, clips or dynamic groups,
    whose rows are not samples that a field can be written on).

    Args:
        samples: a FiftyOne collection
        action: what the caller does, for the message (e.g.
            ``"compute_clusters writes sample fields"``)
    """
    if samples._is_generated or samples._is_dynamic_groups:
        raise InputError(
            f"{action}: run it on the dataset or a view of its samples, "
            "not on patches, frames, clips or dynamic groups"
        )


def vector_field_db_name(samples, field):
    """Checks that ``field`` holds vectors and returns its database name.

    Raises:
        InputError: if the field is missing or does not hold vectors
    """
    schema = samples.get_field_schema(flat=True)
    if field not in schema:
        vector_fields = sorted(
            name
            for name, f in schema.items()
            if isinstance(f, (fof.VectorField, fof.ArrayField))
        )
        hint = (
            "Vector fields here: " + ", ".join(vector_fields)
            if vector_fields
            else "This dataset has no vector fields yet: compute embeddings "
            "first"
        )
        raise InputError(
            f"Dataset '{samples._dataset.name}' has no field "
            f"'{field}'. {hint}"
        )
    f = schema[field]
    if not isinstance(f, (fof.VectorField, fof.ArrayField, fof.ListField)):
        raise InputError(
            f"Field '{field}' is a {type(f).__name__}, not a vector field"
        )
    if "." in field:
        raise InputError(
            f"Field '{field}' is nested; use a top-level vector field"
        )
    return f.db_field or field


def _decode(value, cache):
    """Decodes one stored vector into a 1-D float32 array."""
    if isinstance(value, (bytes, Binary)):
        raw = zlib.decompress(value)
        # All vectors of a field usually share one .npy header: parse it once
        head = cache.get("head")
        if head is not None and raw.startswith(head[0]):
            return np.frombuffer(raw, dtype=head[1], offset=len(head[0]))
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
        offset = len(raw) - arr.nbytes
        if arr.ndim == 1 and offset > 0:
            cache["head"] = (raw[:offset], arr.dtype)
        return arr.ravel()
    return np.asarray(value, dtype=np.float32).ravel()


def read_vectors(samples, field, skip_missing=False, progress=None):
    """Reads a vector field of a collection into one float32 matrix.

    Args:
        samples: a FiftyOne dataset or view
        field: the name of a vector field
        skip_missing (False): whether to drop samples that have no vector
            (otherwise they are an error)
        progress (None): an optional callable ``progress(fraction)``

    Returns:
        ``(ids, X)``: a list of sample ``ObjectId`` s and an ``n x d`` float32
        matrix whose rows are in the same order

    Raises:
        InputError: if the collection is empty, the field is missing or not a
            vector field, vectors have different lengths, or some samples
            have no vector and ``skip_missing`` is False
    """
    db_field = vector_field_db_name(samples, field)
    n = samples.count()
    if n == 0:
        raise InputError("The view is empty: there are no samples to use")

    cursor = samples._aggregate(
        pipeline=[{"$project": {"_id": 1, db_field: 1}}]
    )
    ids = []
    X = None
    missing = 0
    cache = {}
    i = 0
    for doc in cursor:
        value = doc.get(db_field)
        if value is None:
            missing += 1
            continue
        v = _decode_checked(value, cache, field, doc["_id"])
        if X is None:
            X = np.empty((n, v.shape[0]), dtype=np.float32)
        elif v.shape[0] != X.shape[1]:
            raise InputError(
                f"Field '{field}' holds vectors of different lengths: "
                f"{X.shape[1]} and {v.shape[0]} (sample {doc['_id']}). "
                "Recompute the embeddings with one model"
            )
        if i >= len(X):
            X = np.concatenate([X, np.empty_like(X[: len(X) // 2 + 1])])
        X[i] = v
        ids.append(doc["_id"])
        i += 1
        if progress is not None and i % 20000 == 0:
            progress(i / n)

    if missing and not skip_missing:
        raise InputError(
            f"{missing} of {missing + i} samples have no value in "
            f"'{field}'. Compute their embeddings first, or pass "
            "skip_missing=True to use only the samples that have one"
        )
    if i == 0:
        raise InputError(f"No sample in the view has a value in '{field}'")
    if missing:
        logger.info("Skipping %d samples with no '%s'", missing, field)

    X = X[:i]
    _check_unique(ids)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise InputError(
            f"{bad} vectors in '{field}' contain NaN or infinite values"
        )
    return ids, X


def _decode_checked(value, cache, field, sample_id):
    """:func:`_decode`, with a clear error for values that are not numeric
    vectors (lists of strings, numbers beyond float range)."""
    try:
        return _decode(value, cache)
    except (ValueError, TypeError, OverflowError) as e:
        raise InputError(
            f"Field '{field}' holds a value that is not a numeric vector "
            f"(sample {sample_id}: {type(e).__name__}: {e}); compute the "
            "embeddings into a vector field"
        ) from None


def _check_unique(ids):
    """Raises an :class:`InputError` if a sample appears twice."""
    n_unique = len(set(ids))
    if n_unique != len(ids):
        raise InputError(
            f"The view holds {len(ids) - n_unique} samples more than once "
            f"({len(ids)} rows, {n_unique} distinct samples); use a view in "
            "which each sample appears once"
        )


def write_fields(dataset, ids, values, field_types, progress=None, tag=None):
    """Writes per-sample values into new top-level fields of a dataset.

    The values are inserted into a temporary collection in bulk and merged
    into the samples by ``_id`` in one server-side aggregation. The fields
    are added to the dataset's schema only after the values are in place; if
    anything fails, the values written so far are removed again.

    Args:
        dataset: a FiftyOne dataset
        ids: a list of sample ``ObjectId`` s
        values: a dict ``field name -> sequence`` aligned with ``ids``
        field_types: a dict ``field name -> FiftyOne field class``
        progress (None): an optional callable ``progress(fraction)``
        tag (None): a name for the temporary collection (a claim's token),
            so that :func:`temporary_collections` finds it after a crash
    """
    coll = dataset._sample_collection
    prefix = dataset._sample_collection_name + "_tmp_"
    _drop_stale_temporaries(coll.database, prefix)
    tmp = f"{prefix}{int(time.time())}_{tag or uuid.uuid4().hex[:8]}"
    tmp_coll = coll.database[tmp]
    # Values under these names that the schema does not declare are strays
    # of a writer that was killed mid-merge: clear them first
    for name in values:
        if name not in dataset.get_field_schema():
            coll.update_many({name: {"$exists": True}}, {"$unset": {name: ""}})
    names = list(values)
    cols = [_to_bson_list(values[name]) for name in names]
    try:
        with Rollback() as undo:
            undo.push(remove_fields, dataset, names)
            _merge_values(dataset, tmp_coll, ids, names, cols, progress)
            for name in names:
                dataset.add_sample_field(name, field_types[name])
            if progress is not None:
                progress(1.0)
    finally:
        tmp_coll.drop()


def _merge_values(dataset, tmp_coll, ids, names, cols, progress):
    """Inserts the values into ``tmp_coll`` in chunks and merges them into
    the samples by ``_id``, server-side."""
    n = len(ids)
    for start in range(0, n, _WRITE_CHUNK):
        stop = min(n, start + _WRITE_CHUNK)
        docs = [
            dict(zip(names, row), _id=_id)
            for _id, *row in zip(
                ids[start:stop], *(c[start:stop] for c in cols)
            )
        ]
        tmp_coll.insert_many(docs, ordered=False)
        if progress is not None:
            progress(0.5 * stop / n)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    tmp_coll.aggregate(
        [
            {"$addFields": {"last_modified_at": now}},
            {
                "$merge": {
                    "into": dataset._sample_collection.name,
                    "on": "_id",
                    "whenMatched": "merge",
                    "whenNotMatched": "discard",
                }
            },
        ]
    )


_STALE_AFTER_S = 24 * 3600


def temporary_collections(dataset, tag):
    """The temporary collections of :func:`write_fields` calls tagged
    ``tag`` on ``dataset``."""
    prefix = dataset._sample_collection_name + "_tmp_"
    db = dataset._sample_collection.database
    pattern = "^" + re.escape(prefix) + r"\d+_" + re.escape(tag) + "$"
    return db.list_collection_names(filter={"name": {"$regex": pattern}})


def _drop_stale_temporaries(db, prefix):
    """Drops temporary collections that a killed writer left behind (those
    older than a day, so that concurrent writers are never disturbed)."""
    now = time.time()
    for name in db.list_collection_names(
        filter={"name": {"$regex": "^" + re.escape(prefix)}}
    ):
        stamp = name[len(prefix) :].split("_", 1)[0]
        if stamp.isdigit() and now - int(stamp) > _STALE_AFTER_S:
            db.drop_collection(name)


def _to_bson_list(values):
    if isinstance(values, np.ndarray):
        return values.tolist()
    return list(values)


def remove_fields(dataset, names):
    """Removes fields from a dataset's samples and schema, if present."""
    names = [n for n in names if n]
    if not names:
        return
    dataset._sample_collection.update_many(
        {}, {"$unset": {name: "" for name in names}}
    )
    dataset.reload()  # another process may have declared some of them
    schema = dataset.get_field_schema()
    declared = [n for n in names if n in schema]
    if declared:
        dataset.delete_sample_fields(declared)
    dataset.reload()


def ensure_new_field(dataset, field, owned=()):
    """Raises an :class:`InputError` if ``field`` may not be written as a
    new field: a name that is not an identifier, that starts with ``_``,
    that FiftyOne reserves, or that exists on the dataset (in the database's
    full schema, private fields included) and is not one of ``owned``."""
    if field in owned:
        return
    if not isinstance(field, str) or not field.isidentifier():
        raise InputError(
            f"Field name {field!r} is not valid: use letters, digits and "
            "underscores, not starting with a digit"
        )
    if field.startswith("_") or field in RESERVED_FIELDS:
        raise InputError(
            f"Field name '{field}' is reserved by FiftyOne (names starting "
            "with '_' and the default sample fields are): choose another"
        )
    if field in dataset.get_field_schema(include_private=True):
        raise InputError(
            f"Field '{field}' already exists and does not belong to this "
            "run; choose another field name or delete that field first"
        )


# --------------------------------------------------------------------------
# Updates of existing fields, grouped by the value of another field
# --------------------------------------------------------------------------


def set_values_by_group(dataset, key_field, values, field):
    """Sets ``field`` on every sample whose ``key_field`` holds one of the
    keys of ``values``, to the value mapped to that key.

    One server-side ``updateMany`` per key, sent as a single unordered bulk
    request: no per-sample round trip and no sample id list. ``field`` must
    be a top-level field already declared in the dataset's schema.

    Args:
        dataset: a FiftyOne dataset
        key_field: a top-level field whose values select the samples (e.g.
            a cluster id field)
        values: a dict ``key value -> value to set``
        field: the top-level field to set

    Returns:
        the number of samples modified
    """
    if not values:
        return 0
    schema = dataset.get_field_schema()
    key_db = schema[key_field].db_field or key_field
    db = schema[field].db_field or field
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    ops = [
        UpdateMany(
            {key_db: key},
            {"$set": {db: value, "last_modified_at": now}},
        )
        for key, value in values.items()
    ]
    result = dataset._sample_collection.bulk_write(ops, ordered=False)
    return result.modified_count


def fill_values(dataset, ids, values, field_types, tag=None, keep=False):
    """Sets values on samples that have none yet in fields that may
    already exist (the cluster field of a run, when new samples are
    assigned to it), in one server-side merge.

    Missing fields are declared after the values are in place. If anything
    fails, the values are unset again on these samples only (they had
    none), and the fields this call declared are removed, so values of
    other samples are never touched.

    Args:
        dataset: a FiftyOne dataset
        ids: sample ``ObjectId`` s that have no value in any of the fields
        values: ``{field name: sequence aligned with ids}``
        field_types: ``{field name: FiftyOne field class}``
        tag (None): a name for the temporary collection (a claim's token)
        keep (False): whether to keep the temporary collection on success
            (it lists the samples written, for a repair until the caller
            has finished: drop it with :func:`drop_temporaries`)
    """
    coll = dataset._sample_collection
    tmp_coll = coll.database[
        f"{dataset._sample_collection_name}_tmp_{int(time.time())}_"
        f"{tag or uuid.uuid4().hex[:8]}"
    ]
    names = list(values)
    schema = dataset.get_field_schema()
    new = [n for n in names if n not in schema]
    cols = [_to_bson_list(values[name]) for name in names]
    done = False
    try:
        with Rollback() as undo:
            undo.push(remove_fields, dataset, new)
            undo.push(unset_values, dataset, ids, names)
            _merge_values(dataset, tmp_coll, ids, names, cols, None)
            for name in new:
                dataset.add_sample_field(name, field_types[name])
        done = True
    finally:
        if not (done and keep):
            tmp_coll.drop()


def drop_temporaries(dataset, tag):
    """Drops the temporary collections of the writes tagged ``tag``."""
    db = dataset._sample_collection.database
    for name in temporary_collections(dataset, tag):
        db.drop_collection(name)


def unset_values(dataset, ids, names):
    """Unsets fields ``names`` on the samples ``ids`` only."""
    coll = dataset._sample_collection
    for start in range(0, len(ids), _WRITE_CHUNK):
        coll.update_many(
            {"_id": {"$in": list(ids[start : start + _WRITE_CHUNK])}},
            {"$unset": {name: "" for name in names}},
        )
