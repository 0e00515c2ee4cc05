"""The ``zoo`` embedder: any model of the FiftyOne model zoo that exposes
embeddings, run by FiftyOne's own ``compute_embeddings``.

It is registered in :data:`..core.embedders.EMBEDDERS` like the embedders
of :mod:`..core`, from this layer because it imports FiftyOne, and the API
runs it through the same :class:`..core.embedders.Embedder` interface: its
vectors go to the job's ``on_chunk`` callback, chunk by chunk, like
everyone's.
"""

import difflib
import time

import numpy as np

import fiftyone as fo
import fiftyone.core.utils as fou
import fiftyone.zoo as foz

from ..core.devices import resolve_device
from ..core.embed_loop import embed_stats
from ..core.embedders import EMBEDDERS, Embedder
from ..core.progress import ItemProgress
from ..core.schema import Param, ParamError
from ..core.weights import (
    WeightsError,
    check_downloadable,
    hub_offline_unless_reachable,
)
from ..data import InputError

# The reason given for an image FiftyOne could not embed (it does not say)
_FAILED = "could not be embedded"

# Seconds between two progress reports from inside FiftyOne
_REPORT_EVERY = 1.0


@EMBEDDERS.register
class Zoo(Embedder):
    """Any FiftyOne zoo model that exposes embeddings. It runs through
    FiftyOne's own ``compute_embeddings``, on the job's samples."""

    name = "zoo"
    label = "FiftyOne zoo model"
    description = (
        "Any model of the FiftyOne model zoo that exposes embeddings "
        "(fiftyone.zoo.list_zoo_models(tags='embeddings')), run by "
        "FiftyOne's compute_embeddings."
    )
    params = (
        Param(
            "name",
            str,
            "clip-vit-base32-torch",
            "Zoo model name.",
        ),
    )

    def resolve_options(self, device="auto", precision="auto"):
        """Validates the device; zoo models run in the precision FiftyOne
        gives them, so a precision other than ``"auto"`` is refused.

        Returns:
            ``(device, precision)`` as given

        Raises:
            ParamError: on an unknown or unavailable device, or a precision
                other than ``"auto"``
        """
        if device not in (None, "auto"):
            resolve_device(device)
        if precision not in (None, "auto"):
            raise ParamError(
                f"precision={precision!r} does not apply to zoo models, "
                "which run in the precision FiftyOne gives them; leave it "
                "'auto'"
            )
        return device, precision

    def check(self):
        """Fails fast if the zoo model is unknown, exposes no embeddings,
        or cannot be downloaded."""
        _check_zoo_model(self.params_["name"])

    def load(self, device="auto", precision="auto"):
        """Loads the zoo model (on ``device`` unless ``"auto"``); returns
        ``self``."""
        name = self.params_["name"]
        kwargs = {}
        if device not in (None, "auto"):
            kwargs["device"] = device
        try:
            with hub_offline_unless_reachable():
                model = foz.load_zoo_model(name, **kwargs)
        except Exception as e:
            raise WeightsError(
                f"Zoo model '{name}' could not be loaded "
                f"({type(e).__name__}: {e}). If its weights come from the "
                "internet, download them on a machine with access, or use "
                "model='open_clip' or 'torchvision' with a local checkpoint "
                "file"
            ) from e
        if not getattr(model, "has_embeddings", False):
            raise InputError(f"Zoo model '{name}' does not expose embeddings")
        self.model_ = model
        return self

    def build(self, device):
        raise NotImplementedError("FiftyOne builds zoo models, in load()")

    def embed(self, job):
        """Embeds the job's samples with FiftyOne, ``job.chunk_size`` at a
        time, handing each chunk's vectors to ``job.on_chunk``.

        FiftyOne fails a whole batch for one unreadable file, so the
        samples of such batches are retried one by one and only the bad
        files stay without a vector. Without ``job.skip_failures``, an
        unreadable file raises FiftyOne's error, which names it.

        Returns:
            the statistics, as :meth:`..core.embedders.Embedder.embed`
            returns them (``precision`` is ``None``)
        """
        if job.samples is None:
            raise ParamError(
                "Zoo models embed the samples of a FiftyOne collection, not "
                "files: use compute_embeddings()"
            )
        start = time.perf_counter()
        items = ItemProgress(len(job.ids), job.progress)
        failures, embedded, dim = [], 0, None
        for lo in range(0, len(job.ids), job.chunk_size):
            indices = np.arange(lo, min(lo + job.chunk_size, len(job.ids)))
            vectors = self._embed_chunk(job, indices, items)
            good = [k for k, v in enumerate(vectors) if v is not None]
            failures += [
                (job.paths[i], _FAILED)
                for i, v in zip(indices, vectors)
                if v is None
            ]
            if good:
                chunk = np.stack([vectors[k] for k in good])
                chunk = chunk.astype(np.float32, copy=False)
                embedded += len(good)
                dim = chunk.shape[1]
                if job.on_chunk is not None:
                    job.on_chunk(indices[good], chunk)
            items.set(int(indices[-1]) + 1)
        return embed_stats(embedded, failures, dim, None, start)

    def _embed_chunk(self, job, indices, items):
        """The vectors of the job's samples at ``indices``, ``None`` for
        those FiftyOne could not embed."""
        ids = [job.ids[i] for i in indices]
        lo = int(indices[0])
        report = fou.report_progress(
            lambda pb: items.set(lo + pb.iteration), dt=_REPORT_EVERY
        )
        samples = job.samples.select(ids, ordered=True)
        vectors = self._run(samples, job, job.batch_size, report)
        missing = [k for k, v in enumerate(vectors) if v is None]
        if missing and job.batch_size != 1:
            # FiftyOne skips a whole batch for one unreadable image: retry
            # those samples one by one so only the bad files stay empty
            retry = job.samples.select([ids[k] for k in missing], ordered=True)
            for k, v in zip(missing, self._run(retry, job, 1, False)):
                vectors[k] = v
        return vectors

    def _run(self, samples, job, batch_size, progress):
        """FiftyOne's ``compute_embeddings`` on ``samples``, as a list of
        vectors (``None`` where it failed); its own progress bar stays
        hidden, as the job reports progress."""
        with fou.SetAttributes(fo.config, show_progress_bars=False):
            vectors = samples.compute_embeddings(
                self.model_,
                batch_size=batch_size,
                num_workers=job.num_workers,
                skip_failures=job.skip_failures,
                progress=progress,
            )
        return list(vectors)


def _check_zoo_model(name):
    """Returns the zoo model's manifest entry; fails fast if it is unknown,
    exposes no embeddings, or cannot be downloaded."""
    try:
        zoo_model = foz.get_zoo_model(name)
    except ValueError:
        names = foz.list_zoo_models(tags="embeddings")
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
        hint = ", ".join(close or names[:8])
        raise InputError(
            f"Unknown zoo model {name!r} (zoo__name). Zoo models with "
            f"embeddings include: {hint}; see "
            "fiftyone.zoo.list_zoo_models(tags='embeddings')"
        ) from None
    if not zoo_model.has_tag("embeddings"):
        raise InputError(
            f"Zoo model '{name}' does not expose embeddings; see "
            "fiftyone.zoo.list_zoo_models(tags='embeddings')"
        )
    if foz.is_zoo_model_downloaded(name) is False:
        url = getattr(getattr(zoo_model.manager, "config", None), "url", "")
        check_downloadable(
            url or "https://huggingface.co",
            f"of zoo model '{name}'",
            "Download them on a machine with internet access "
            f"(`fiftyone zoo models download {name}`) into "
            f"{fo.config.model_zoo_dir}, or use model='open_clip' or "
            "'torchvision' with a local checkpoint file",
        )
    return zoo_model
