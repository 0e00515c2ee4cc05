"""The compute_embeddings operator: a model's vectors into a sample field,
in one run or in shards that delegated workers take (see
:mod:`._shards`)."""

import functools

import fiftyone.core.fields as fof
import fiftyone.operators.types as types

from .. import api
from ..core.embedders import EMBEDDERS, PRECISIONS
from ._common import (
    HeavyOperator,
    add_choice_input,
    add_dropdown_input,
    add_schema_inputs,
    add_target_view_input,
    mark_invalid,
)
from ._execution import call_from_python, from_app, run_api
from ._results import embeddings_output, shards_output
from ._shards import queue_shards

_DEVICES = ("auto", "cpu", "cuda", "mps")
# the inputs of add_run_options
RUN_OPTIONS = ("batch_size", "num_workers", "device", "precision")
_COMMON = ("embeddings_field",) + RUN_OPTIONS + ("skip_failures", "overwrite")


def add_run_options(inputs):
    """How embeddings are computed: batch size, decoding workers, device
    and precision (shared with the compute_clusters form)."""
    inputs.int(
        "batch_size",
        min=1,
        label="Batch size",
        description="Images per batch; empty picks 16 on CPU, 256 on GPU",
    )
    inputs.int(
        "num_workers",
        min=0,
        label="Workers",
        description=(
            "Processes that decode images (threads that read files where "
            "JPEGs are decoded on a GPU); empty picks one per core but "
            "one on a CPU (up to 4), one per core on a GPU"
        ),
    )
    add_dropdown_input(
        inputs,
        "device",
        _DEVICES,
        "auto",
        "Device",
        "auto picks CUDA, then Apple MPS, then the CPU",
    )
    add_dropdown_input(
        inputs,
        "precision",
        PRECISIONS,
        "auto",
        "Precision",
        "auto runs float16 on a GPU, bfloat16 on a CPU with Intel AMX "
        "(3-4x faster than float32 there) and float32 otherwise; "
        "vectors are stored as float32",
    )


def _field_input(inputs, ctx, model):
    """The embeddings field: a new name, or an existing vector field (whose
    samples with vectors are skipped unless overwriting)."""
    default = f"{model}_embeddings"
    inputs.str(
        "embeddings_field",
        default=default,
        required=True,
        label="Embeddings field",
        description=(
            "The vector field to write (created if missing). Samples that "
            "already have a vector in it are skipped unless you overwrite"
        ),
    )
    field = ctx.params.get("embeddings_field") or default
    schema = ctx.dataset.get_field_schema() if ctx.dataset else {}
    if field not in schema:
        if not field.isidentifier():
            mark_invalid(
                inputs,
                "embeddings_field",
                "Use letters, digits and underscores, not starting with a "
                "digit",
            )
        return
    if not isinstance(schema[field], (fof.VectorField, fof.ArrayField)):
        mark_invalid(
            inputs,
            "embeddings_field",
            f"'{field}' is a {type(schema[field]).__name__}, not a vector "
            "field: choose another name",
        )
        return
    view = ctx.target_view()
    have = view.exists(field).count()
    if have:
        inputs.view(
            "field_notice",
            types.Notice(
                label=(
                    f"{have:,} of {view.count():,} samples already have "
                    f"'{field}': they are skipped unless you overwrite"
                )
            ),
        )


def _shards_input(inputs, ctx):
    """How many delegated operations the run is split into."""
    n = ctx.target_view().count()
    inputs.int(
        "shards",
        default=api.default_shards(n),
        min=1,
        label="Shards",
        description=(
            "Split the run into this many delegated operations, one per "
            "`fiftyone delegated launch` worker that shares this database "
            "and the media; 1 runs it as one. Proposed: one per "
            f"{api.SHARD_EVERY:,} samples above {api.SHARD_EVERY:,}"
        ),
    )
    shards = ctx.params.get("shards")
    if isinstance(shards, int) and shards > max(n, 1):
        mark_invalid(
            inputs,
            "shards",
            f"{shards:,} shards is more than the {n:,} samples",
        )


class ComputeEmbeddings(HeavyOperator):
    CONFIG = (
        "compute_embeddings",
        "Compute embeddings",
        "Compute an image embedding per sample into a vector field",
    )

    def form(self, ctx):
        inputs = types.Object()
        add_target_view_input(inputs, ctx, "Embed")

        add_choice_input(
            inputs,
            "model",
            EMBEDDERS,
            "open_clip",
            "Model",
            "What computes the vectors",
        )
        model = ctx.params.get("model") or "open_clip"
        if model in EMBEDDERS.names():
            add_schema_inputs(inputs, EMBEDDERS, model, ctx)
        else:
            mark_invalid(
                inputs,
                "model",
                f"Unknown embedder {model!r}. Choose one of: "
                + ", ".join(EMBEDDERS.names()),
            )

        if ctx.dataset is not None:
            _field_input(inputs, ctx, model)
        add_run_options(inputs)
        inputs.bool(
            "skip_failures",
            default=True,
            label="Skip unreadable images",
            description=(
                "Samples whose image is missing or corrupt get no vector and "
                "are reported; otherwise the first one stops the run and "
                "nothing is written"
            ),
            view=types.CheckboxView(),
        )
        inputs.bool(
            "overwrite",
            default=False,
            label="Overwrite",
            description="Recompute samples that already have a vector",
            view=types.CheckboxView(),
        )
        if ctx.dataset is not None:
            _shards_input(inputs, ctx)
        return self.finish_form(inputs, ctx)

    def resolve_delegation(self, ctx):
        """A sharded run queues its shards now (the shards are the
        delegated operations), unless its delegation is asked for."""
        shards = ctx.params.get("shards")
        if shards is None and from_app(ctx) and ctx.dataset is not None:
            shards = api.default_shards(ctx.target_view().count())
        if (
            shards not in (None, 1)
            and not ctx.requesting_delegated_execution
            and ctx.params.get("delegate") is None
        ):
            return False
        return super().resolve_delegation(ctx)

    def execute(self, ctx):
        p = ctx.params
        model = p.get("model") or "open_clip"
        prefix = model + "__"
        params = {
            k: v for k, v in p.items() if k.startswith(prefix) and v != ""
        }
        kwargs = {k: p[k] for k in _COMMON if p.get(k) is not None}
        kwargs.setdefault("embeddings_field", f"{model}_embeddings")
        kwargs = dict(model=model, **kwargs, **params)
        if p.get("shard_group") is not None:  # one shard, delegated
            kwargs.pop("overwrite", None)
            kwargs.update(
                shard_group=p["shard_group"],
                shard=p["shard"],
                # FiftyOne keeps the id private; None where it is absent
                operation_id=getattr(ctx, "_delegated_operation_id", None),
            )
            return run_api(
                ctx,
                api.run_embedding_shard,
                ctx.target_view(),
                kwargs,
                output=embeddings_output,
            )
        shards = p.get("shards")
        if shards is None and from_app(ctx):
            shards = api.default_shards(ctx.target_view().count())
        if shards is not None and shards != 1:
            return run_api(
                ctx,
                functools.partial(queue_shards, ctx, self.uri),
                ctx.target_view(),
                dict(kwargs, shards=shards),
                reload=False,
                output=shards_output,
            )
        return run_api(
            ctx,
            api.compute_embeddings,
            ctx.target_view(),
            kwargs,
            output=embeddings_output,
        )

    def __call__(
        self,
        sample_collection,
        embeddings_field,
        model="open_clip",
        batch_size=None,
        num_workers=None,
        device="auto",
        precision="auto",
        skip_failures=True,
        overwrite=False,
        shards=None,
        delegate=False,
        **params,
    ):
        """Computes one float32 vector per sample into a vector field.

        Example::


            op = foo.get_operator("@curate/clustering/compute_embeddings")
            op(dataset, "clip_embeddings",
               open_clip__pretrained="/path/to/checkpoint.pt")

        Args:
            sample_collection: an image dataset or view
            embeddings_field: the vector field to write (created if
                missing)
            model ("open_clip"): ``open_clip``, ``torchvision``, ``pixels``
                or ``zoo``
            batch_size (None): images per batch; ``None`` picks 16 on a CPU
                and 256 on a GPU
            num_workers (None): processes that decode images (threads that
                read files where JPEGs are decoded on a GPU); ``0`` decodes
                in the main process; ``None`` picks one per core but one on
                a CPU (up to 4), one per core on a GPU
            device ("auto"): ``auto`` (CUDA, then MPS, then CPU), ``cpu``,
                ``cuda`` or ``mps``
            precision ("auto"): ``auto`` (float16 on a GPU, bfloat16 on a
                CPU with Intel AMX, float32 otherwise), ``float32``,
                ``bfloat16`` or ``float16``
            skip_failures (True): whether samples with a missing or corrupt
                image are skipped and reported (otherwise the first one
                raises and nothing is written)
            overwrite (False): whether to recompute samples that already
                have a vector
            shards (None): split the samples to embed into this many
                shards, each queued as a delegated operation for any
                ``fiftyone delegated launch`` worker that shares the
                database and the media (``None`` or 1: one run, now or
                delegated as ``delegate`` says); ``result`` then lists the
                queued operations
            delegate (False): whether to queue the run for
                ``fiftyone delegated launch``
            **params: the model's parameters as ``<model>__<param>``, e.g.
                ``open_clip__arch="ViT-B-32"``,
                ``open_clip__pretrained="laion2b_s34b_b79k"`` or a
                checkpoint path, ``torchvision__arch="resnet50"``,
                ``torchvision__weights="DEFAULT"`` or a path,
                ``pixels__size=16``, ``pixels__color="rgb"``,
                ``zoo__name="clip-vit-base32-torch"``

        Returns:
            an :class:`fiftyone.operators.executor.ExecutionResult` whose
            ``result`` is the dict of
            :func:`compute_embeddings` in the plugin's API
        """
        arguments = dict(locals())
        resolved = EMBEDDERS.resolve(model, params)
        arguments["params"] = {f"{model}__{k}": v for k, v in resolved.items()}
        return call_from_python(self, arguments)


OPERATORS = [ComputeEmbeddings]
