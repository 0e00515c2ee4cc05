"""Embeddings into sample fields: any registered embedder, over the images
of a collection, written in chunks so that an interrupted run resumes.

Every embedder runs through the same interface
(:class:`..core.embedders.Embedder`): ``resolve_options`` before anything is
read, then ``check``, ``load`` and ``embed``, whose vectors come back in
chunks to one writer. Importing this module registers the FiftyOne zoo
embedder (:mod:`.zoo`) after those of :mod:`..core`.
"""

import contextlib
import functools
import logging
import time

from bson import ObjectId

import fiftyone as fo
import fiftyone.core.utils as fou

from .. import shard_store
from ..core.embedders import EMBEDDERS, EmbedJob
from ..core.schema import ParamError
from ..data import (
    InputError,
    _decode,
    check_sample_collection,
    vector_field_db_name,
)
from .zoo import Zoo

__all__ = ["EMBED_DEFAULTS", "Zoo", "compute_embeddings"]

logger = logging.getLogger(__name__)

# compute_embeddings' defaults for the options compute_clusters passes on
EMBED_DEFAULTS = dict(
    batch_size=None, num_workers=None, device="auto", precision="auto"
)

# Vectors are written to the database every this many samples
_EMB_WRITE_EVERY = 2048

# Failed files listed in the result
_EMB_SHOW_FAILED = 10


def compute_embeddings(
    samples,
    embeddings_field,
    model="open_clip",
    batch_size=None,
    num_workers=None,
    device="auto",
    precision="auto",
    skip_failures=True,
    overwrite=False,
    progress=None,
    _shard=None,
    **params,
):
    """Computes one float32 vector per sample into a vector field.

    Images are decoded and preprocessed by worker processes while the model
    runs batched inference; vectors are written to the database in chunks
    as they are computed, so an interrupted run keeps what it finished and
    a second call with ``overwrite=False`` resumes where it stopped.

    Args:
        samples: a FiftyOne image dataset or view
        embeddings_field: the name of the sample ``VectorField`` to write
            (created if missing)
        model ("open_clip"): the embedder: ``"open_clip"``,
            ``"torchvision"``, ``"pixels"`` or ``"zoo"`` (any FiftyOne zoo
            model that exposes embeddings)
        batch_size (None): images per batch; ``None`` picks 16 on a CPU and
            256 on a GPU
        num_workers (None): worker processes that decode images; ``0``
            decodes in this process; ``None`` picks one per core but one
            on a CPU (up to 4), one per core on a GPU. On a CUDA device,
            JPEGs are decoded and preprocessed on the GPU in batches
            (open_clip and torchvision models, pixels), and this is the
            number of threads that read files
        device ("auto"): ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``
        precision ("auto"): the floating-point type the model runs in:
            ``"auto"`` (float16 on a GPU, bfloat16 on a CPU with Intel AMX,
            where it is 3-4x faster than float32; float32 otherwise),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``. Vectors are
            stored as float32 whatever the precision. Zoo models run as
            FiftyOne configures them, so only ``"auto"`` applies to them
        skip_failures (True): whether samples whose image is missing,
            unreadable or corrupt are skipped (they get no vector and are
            reported). Otherwise the first such file raises an error and
            nothing is written: vectors are then kept in memory and written
            once every image has been embedded
        overwrite (False): whether to recompute samples that already have a
            vector in ``embeddings_field`` (otherwise they are skipped)
        progress (None): a ``progress(fraction, label)`` callable, or
            whether to show a progress bar (``None`` follows
            ``fo.config.show_progress_bars``)
        _shard (None): internal: the bookkeeping document of the shard
            this call runs (see :func:`.shards.run_embedding_shard`)
        **params: the embedder's parameters, as ``<model>__<param>`` (for
            example ``open_clip__pretrained="/path/to/checkpoint.pt"`` or
            ``pixels__size=32``); see ``core.embedders.EMBEDDERS``

    Returns:
        a dict with ``embeddings_field``, ``model``, ``params``, ``dim``,
        ``precision`` (the model's floating-point type; ``None`` for
        ``pixels`` and zoo models), ``embedded`` (vectors written),
        ``skipped`` (samples that already had one), ``failed`` (count),
        ``failed_files`` (the first few unreadable files), ``first_error``,
        ``seconds`` and ``images_per_s``

    Raises:
        ParamError: on an unknown embedder, parameter, device or precision
        InputError: on a bad field or collection, or a field that the
            shards of a sharded run are writing
        WeightsError: if the model's weights are neither cached nor
            downloadable (raised at once, before any image is read)
        ImageError: on an unreadable image when ``skip_failures`` is False
    """
    embedder = EMBEDDERS.get(model)(**params)
    _check_args(
        embeddings_field, batch_size, num_workers, skip_failures, overwrite
    )
    _check_collection(samples)
    exists = _check_field(samples._dataset, embeddings_field)
    if _shard is None:
        _refuse_pending_shards(samples._dataset, embeddings_field)
    device, precision = embedder.resolve_options(device, precision)
    result = _new_result(embeddings_field, model, embedder.params_)
    todo, ids, paths = _todo(samples, embeddings_field, exists, overwrite)
    result["skipped"] = samples.count() - len(ids)
    if not ids:
        logger.info(
            "All %d samples already have '%s'; nothing to compute",
            result["skipped"],
            embeddings_field,
        )
        return result

    start = time.perf_counter()
    embedder.check()
    embedder.load(device, precision)
    writer = _Writer(
        samples._dataset, embeddings_field, ids, not skip_failures, _shard
    )
    with _progress_callback(progress, len(ids)) as report:
        job = EmbedJob(
            paths,
            ids=ids,
            samples=todo,
            batch_size=batch_size,
            num_workers=num_workers,
            skip_failures=skip_failures,
            on_chunk=writer.add,
            chunk_size=writer.write_every,
            progress=report,
        )
        stats = embedder.embed(job)
        writer.finish()
    if overwrite and stats["failures"]:
        _clear_failed(samples._dataset, embeddings_field, ids, paths, stats)
    return _finish_result(result, stats, start)


def _refuse_pending_shards(dataset, field):
    """Refuses a field that the shards of a sharded run are writing."""
    busy = shard_store.pending(dataset, field)
    if busy:
        raise shard_store.busy_error(dataset, field, busy)


def _write_every(shard):
    """Vectors are written every this many samples; in a shard, more often
    (a dead shard loses at most 5% of its work)."""
    if shard is None:
        return _EMB_WRITE_EVERY
    return min(_EMB_WRITE_EVERY, max(64, shard["count"] // 20))


def _clear_failed(dataset, field, ids, paths, stats):
    """With ``overwrite``, a sample whose image failed loses its old
    vector: it was asked to be replaced, and the old one may come from
    another model, of another dimension."""
    failed = {path for path, _ in stats["failures"]}
    stale = [i for i, p in zip(ids, paths) if p in failed]
    db_field = vector_field_db_name(dataset, field)
    dataset._sample_collection.update_many(
        {"_id": {"$in": [ObjectId(i) for i in stale]}},
        {"$unset": {db_field: ""}},
    )
    logger.warning(
        "Cleared the old '%s' of %d samples whose image failed",
        field,
        len(stale),
    )


def _check_args(field, batch_size, num_workers, skip_failures, overwrite):
    if not isinstance(field, str) or not field.isidentifier():
        raise InputError(
            f"embeddings_field must be a field name (letters, digits and "
            f"underscores, not starting with a digit); got {field!r}"
        )
    for name, value, low in (
        ("batch_size", batch_size, 1),
        ("num_workers", num_workers, 0),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{name} must be an integer; got {value!r}")
        if value < low:
            raise ParamError(f"{name} must be >= {low}; got {value}")
    for name, value in (
        ("skip_failures", skip_failures),
        ("overwrite", overwrite),
    ):
        if not isinstance(value, bool):
            raise ParamError(f"{name} must be True or False")


def _check_collection(samples):
    check_sample_collection(samples, "compute_embeddings writes sample fields")
    media_type = samples.media_type
    if media_type == "group":
        raise InputError(
            "compute_embeddings needs image samples; this is a grouped "
            "collection: select a slice first, e.g. "
            "dataset.select_group_slices('left')"
        )
    if media_type != "image":
        raise InputError(
            f"compute_embeddings supports image collections; this one "
            f"holds {media_type} samples"
        )


def _check_field(dataset, field):
    """Returns whether ``field`` exists; raises if it is not a vector
    field."""
    schema_ = dataset.get_field_schema()
    if field not in schema_:
        return False
    f = schema_[field]
    if not isinstance(f, (fo.VectorField, fo.ArrayField)):
        raise InputError(
            f"Field '{field}' exists and is a {type(f).__name__}, not a "
            "vector field; choose another embeddings_field"
        )
    return True


def _todo(samples, field, exists, overwrite):
    """The samples to embed (those without a vector in ``field`` unless
    ``overwrite``), their ids and their image paths."""
    todo = samples
    if exists and not overwrite:
        todo = samples.exists(field, False)
    ids, paths = todo.values(["id", "filepath"])
    return todo, ids, paths


def _new_result(field, model, params):
    """The result of a run that has embedded nothing yet."""
    return {
        "embeddings_field": field,
        "model": model,
        "params": params,
        "dim": None,
        "precision": None,
        "embedded": 0,
        "skipped": 0,
        "failed": 0,
        "failed_files": [],
        "first_error": None,
        "seconds": 0.0,
        "images_per_s": 0.0,
    }


def _finish_result(result, stats, start):
    """Fills ``result`` from the embedder's statistics and warns about the
    files that failed."""
    failures = stats["failures"]
    result.update(
        dim=stats["dim"],
        precision=stats["precision"],
        embedded=stats["embedded"],
        failed=len(failures),
        failed_files=[path for path, _ in failures[:_EMB_SHOW_FAILED]],
        first_error=failures[0][1] if failures else None,
        seconds=round(time.perf_counter() - start, 3),
        images_per_s=round(stats["images_per_s"], 2),
    )
    if failures:
        logger.warning(
            "%d images could not be read and have no '%s' (first: %s)",
            len(failures),
            result["embeddings_field"],
            ", ".join(result["failed_files"]),
        )
    return result


class _Writer:
    """Writes chunks of vectors with bulk updates; with ``buffered``, keeps
    them until :meth:`finish`."""

    def __init__(self, dataset, field, ids, buffered, shard=None):
        self.write_every = _write_every(shard)
        self.dataset = dataset
        self.field = field
        self.ids = ids
        self.buffered = buffered
        self.pending = []
        self.checked = False

    def add(self, indices, vectors):
        """Takes the vectors of the samples at positions ``indices`` of
        ``ids`` (an ``on_chunk`` callback)."""
        if self.buffered:
            self.pending.append((indices, vectors))
        else:
            self._write(indices, vectors)

    def finish(self):
        """Writes what is buffered."""
        pending, self.pending = self.pending, []
        for indices, vectors in pending:
            self._write(indices, vectors)

    def _write(self, indices, vectors):
        if not self.checked:
            # every sample of this call is replaced (or, if its image
            # fails, cleared): compare with the others only
            self._check_dim(vectors.shape[1], set(self.ids))
            self.checked = True
        for start in range(0, len(indices), self.write_every):
            stop = start + self.write_every
            values = {
                self.ids[i]: v
                for i, v in zip(indices[start:stop], vectors[start:stop])
            }
            self.dataset.set_values(
                self.field, values, key_field="id", validate=False
            )

    def _check_dim(self, dim, mine):
        """Refuses to mix vector lengths in one field: compares with a
        vector this run does not replace."""
        if self.field not in self.dataset.get_field_schema():
            self.dataset.add_sample_field(self.field, fo.VectorField)
            return
        db_field = vector_field_db_name(self.dataset, self.field)
        cursor = self.dataset._aggregate(
            pipeline=[
                {"$match": {db_field: {"$ne": None}}},
                {"$project": {db_field: 1}},
                {"$limit": 1000},
            ]
        )
        for doc in cursor:
            if str(doc["_id"]) in mine:
                continue
            have = _decode(doc[db_field], {}).shape[0]
            if have != dim:
                raise InputError(
                    f"Field '{self.field}' holds {have}-d vectors and this "
                    f"model computes {dim}-d ones; choose another "
                    "embeddings_field, or delete the field first"
                )
            return


@contextlib.contextmanager
def _progress_callback(progress, total):
    """``progress`` as a ``progress(fraction, label)`` callback (see
    :mod:`..core.progress`) for a run over ``total`` images: a callable is
    used as it is; otherwise a FiftyOne progress bar of images is shown
    (``None`` follows ``fo.config.show_progress_bars``, ``False`` shows
    nothing)."""
    if callable(progress):
        yield progress
        return
    with fou.ProgressBar(
        total=total, progress=progress, iters_str="images"
    ) as bar:
        yield functools.partial(_move_bar, bar, total)


def _move_bar(bar, total, fraction, label=None):
    """Moves a progress bar of ``total`` images to ``fraction``."""
    done = int(round(fraction * total))
    if done > bar.iteration:
        bar.set_iteration(done)
