"""The compute_embeddings operator: a model's vectors into a sample field."""

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
from ._execution import call_from_python, run_api
from ._results import embeddings_output

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
        description="Images per batch; empty picks 16 on CPU, 64 on GPU",
    )
    inputs.int(
        "num_workers",
        min=0,
        label="Workers",
        description=(
            "Processes that decode images; empty picks one per core "
            "but one on a CPU (up to 4), up to 8 on a GPU"
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
        return self.finish_form(inputs, ctx)

    def execute(self, ctx):
        p = ctx.params
        model = p.get("model") or "open_clip"
        prefix = model + "__"
        params = {
            k: v for k, v in p.items() if k.startswith(prefix) and v != ""
        }
        kwargs = {k: p[k] for k in _COMMON if p.get(k) is not None}
        kwargs.setdefault("embeddings_field", f"{model}_embeddings")
        return run_api(
            ctx,
            api.compute_embeddings,
            ctx.target_view(),
            dict(model=model, **kwargs, **params),
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
                and 64 on a GPU
            num_workers (None): processes that decode images; ``0`` decodes
                in the main process; ``None`` picks one per core but one on
                a CPU (up to 4), up to 8 on a GPU
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
