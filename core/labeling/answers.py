"""What a model is asked and what it answers: the prompt, the cost
estimate of a run, and a tolerant reading of answers into
:class:`ClusterLabel` s."""

import dataclasses
import json
import math
import re

from .options import DETAILS

MAX_LABEL_CHARS = 60
MAX_DESCRIPTION_CHARS = 300

# Input tokens per image of at most 512 x 512 pixels. "low" is OpenAI's
# fixed cost for low-detail images; "high" and "auto" take the larger of
# the tile-based (85 + 170 per 512-px tile) and patch-based (32-px patches
# times 1.62 for the mini models) costs, so the estimate errs on the high
# side.
TOKENS_PER_IMAGE = {"low": 85, "high": 425, "auto": 425}
# Tokens of a JSON answer with a short label and a one-sentence description
OUTPUT_TOKENS = 60
# Message framing added by chat templates, per request and per image
REQUEST_OVERHEAD_TOKENS = 10
IMAGE_OVERHEAD_TOKENS = 5

RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {
            "type": "string",
            "description": "A short name for the cluster, 1 to 4 words.",
        },
        "description": {
            "type": "string",
            "description": "One sentence describing what the images "
            "have in common.",
        },
    },
    "required": ["label", "description"],
    "additionalProperties": False,
}


@dataclasses.dataclass(frozen=True)
class ClusterLabel:
    """The name and description of a cluster.

    Attributes:
        name: a short human name (a few words)
        description: one sentence
    """

    name: str
    description: str


class AnswerError(ValueError):
    """The model's answer holds no usable label."""


def build_prompt(n_images, context=None):
    """The instruction sent with the images of one cluster.

    Args:
        n_images: the number of images shown
        context (None): optional words about the dataset

    Returns:
        a string
    """
    plural = "image" if n_images == 1 else f"{n_images} images"
    text = (
        f"The {plural} below belong to one cluster of an image dataset: "
        "they were grouped because they look alike. Name what they have "
        "in common.\n"
        "Answer with JSON only, of the form "
        '{"label": "...", "description": "..."}, where "label" is a short '
        'name of 1 to 4 words and "description" is one sentence.'
    )
    context = (context or "").strip()
    if context:
        text += f"\nAbout the dataset: {context}"
    return text


def estimate(n_clusters, images_per_cluster, detail="low", context=None):
    """Estimates the requests, images and tokens of a labelling run.

    Args:
        n_clusters: the number of clusters to label
        images_per_cluster: the images shown per cluster
        detail ("low"): the image detail requested, one of
            :data:`DETAILS`
        context (None): the optional words about the dataset

    Returns:
        a dict with ``requests``, ``images``, ``input_tokens``,
        ``output_tokens`` and ``total_tokens`` (ints)
    """
    if detail not in TOKENS_PER_IMAGE:
        raise ValueError(
            f"Unknown detail {detail!r}; use one of {', '.join(DETAILS)}"
        )
    n_clusters = max(0, int(n_clusters))
    images_per_cluster = max(0, int(images_per_cluster))
    prompt = build_prompt(images_per_cluster, context)
    prompt_tokens = math.ceil(len(prompt) / 4) + REQUEST_OVERHEAD_TOKENS
    image_tokens = TOKENS_PER_IMAGE[detail] + IMAGE_OVERHEAD_TOKENS
    per_request = prompt_tokens + images_per_cluster * image_tokens
    input_tokens = n_clusters * per_request
    output_tokens = n_clusters * OUTPUT_TOKENS
    return {
        "requests": n_clusters,
        "images": n_clusters * images_per_cluster,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_LINE_KEY = re.compile(
    r"^\s*[*_#>\-\s]*(label|name|title|description)[*_\s]*[:=\-]\s*(.+)$",
    re.IGNORECASE,
)


def parse_answer(text):
    """Reads a :class:`ClusterLabel` from a model's answer.

    Accepts plain JSON, JSON in a Markdown code fence or surrounded by
    prose, ``Label: ...`` / ``Description: ...`` lines, or, as a last
    resort, a first line taken as the label and the rest as the
    description.

    Raises:
        AnswerError: if the answer holds no label
    """
    if not isinstance(text, str) or not text.strip():
        raise AnswerError("the answer is empty")
    text = text.strip()

    candidates = [text] + _FENCE.findall(text) + _json_objects(text)
    for candidate in candidates:
        try:
            obj = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(obj, dict):
            label = _from_dict(obj)
            if label is not None:
                return label

    fields = {}
    for line in text.splitlines():
        m = _LINE_KEY.match(line)
        if m:
            key = m.group(1).lower()
            key = "description" if key == "description" else "label"
            fields.setdefault(key, m.group(2))
    if fields.get("label"):
        return _clean(fields["label"], fields.get("description", ""))

    if text.lstrip().startswith(("{", "[")):
        raise AnswerError(f"the answer is malformed JSON: {shorten(text)}")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    head, rest = lines[0], " ".join(lines[1:])
    if len(head) > 2 * MAX_LABEL_CHARS:
        # One long paragraph: not a label
        raise AnswerError(f"the answer holds no label: {shorten(text)}")
    return _clean(head, rest)


def _json_objects(text):
    """Balanced ``{...}`` substrings of ``text``, outermost first."""
    found = []
    depth = 0
    start = None
    in_str = False
    escape = False
    for i, ch in enumerate(text):
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                found.append(text[start : i + 1])
    return found


def _from_dict(obj):
    lower = {str(k).lower(): v for k, v in obj.items()}
    label = next(
        (
            lower[k]
            for k in ("label", "name", "title", "cluster_name")
            if isinstance(lower.get(k), str) and lower[k].strip()
        ),
        None,
    )
    if label is None:
        return None
    description = lower.get("description") or lower.get("summary") or ""
    if not isinstance(description, str):
        description = str(description)
    return _clean(label, description)


def _clean(label, description):
    label = " ".join(str(label).split()).strip(" \"'`*_#.:;,")
    if not label:
        raise AnswerError("the answer's label is empty")
    if len(label) > MAX_LABEL_CHARS:
        label = label[:MAX_LABEL_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:-")
    description = " ".join(str(description).split()).strip(" \"'`*_")
    if len(description) > MAX_DESCRIPTION_CHARS:
        cut = description[:MAX_DESCRIPTION_CHARS].rsplit(" ", 1)[0]
        description = cut.rstrip(" ,;:-") + "..."
    return ClusterLabel(label, description)


def shorten(text, n=120):
    """``text`` on one line, cut to about ``n`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."
