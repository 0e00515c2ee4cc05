"""Naming clusters with a multimodal LLM.

A cluster is named by showing a few of its images, as small JPEG
thumbnails, to a multimodal language model and asking for a short label
and a one-sentence description. The model sits behind a small interface,
:class:`Labeler` (``label(images, prompt) -> ClusterLabel``);
:class:`OpenAILabeler` implements it with the official ``openai`` client
against any OpenAI-compatible server (``base_url``).

:func:`label_clusters` sends one request per cluster, several at a time,
and reports each finished cluster through a callback as soon as it is done,
so the caller can store labels progressively. Rate limits (429), server
errors (5xx) and timeouts are retried with exponential backoff that honours
``Retry-After``; a cluster that keeps failing is reported with the reason
while the others still get their labels.

The API key is held by the client only: it never appears in a log line or
an error message raised from here.

One module per part, each re-exported here:

-   :mod:`.options`: :data:`OPTIONS`, the schema of a labelling run's
    options (validation, the App form and the README table)
-   :mod:`.answers`: the prompt, the cost estimate, reading answers
-   :mod:`.images`: which members are shown, and their thumbnails
-   :mod:`.client`: the :class:`Labeler` interface and the OpenAI client
-   :mod:`.runner`: many clusters at once, outcomes as they come

Nothing here imports ``fiftyone``.
"""

from .answers import (
    IMAGE_OVERHEAD_TOKENS,
    MAX_DESCRIPTION_CHARS,
    MAX_LABEL_CHARS,
    OUTPUT_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    RESPONSE_SCHEMA,
    TOKENS_PER_IMAGE,
    AnswerError,
    ClusterLabel,
    build_prompt,
    estimate,
    parse_answer,
)
from .client import (
    FatalLabelError,
    LabelError,
    Labeler,
    OpenAILabeler,
    display_url,
)
from .images import (
    JPEG_QUALITY,
    THUMBNAIL_SIZE,
    data_url,
    make_thumbnail,
    select_members,
)
from .options import DEFAULT_MODEL, DETAILS, OPTIONS, SELECTIONS
from .runner import Job, Outcome, label_clusters

__all__ = [
    "AnswerError",
    "ClusterLabel",
    "DEFAULT_MODEL",
    "DETAILS",
    "FatalLabelError",
    "IMAGE_OVERHEAD_TOKENS",
    "JPEG_QUALITY",
    "Job",
    "LabelError",
    "Labeler",
    "MAX_DESCRIPTION_CHARS",
    "MAX_LABEL_CHARS",
    "OPTIONS",
    "OUTPUT_TOKENS",
    "OpenAILabeler",
    "Outcome",
    "REQUEST_OVERHEAD_TOKENS",
    "RESPONSE_SCHEMA",
    "SELECTIONS",
    "THUMBNAIL_SIZE",
    "TOKENS_PER_IMAGE",
    "build_prompt",
    "data_url",
    "display_url",
    "estimate",
    "label_clusters",
    "make_thumbnail",
    "parse_answer",
    "select_members",
]
