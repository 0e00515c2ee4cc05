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

Nothing here imports ``fiftyone``.
"""

import base64
import concurrent.futures
import dataclasses
import email.utils
import io
import json
import logging
import math
import random
import re
import threading
import time

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4.1-mini"
THUMBNAIL_SIZE = 512
JPEG_QUALITY = 85
MAX_LABEL_CHARS = 60
MAX_DESCRIPTION_CHARS = 300
DETAILS = ("low", "high", "auto")
SELECTIONS = ("representative", "random")

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


class LabelError(RuntimeError):
    """A cluster could not be labelled; the message says why."""


class FatalLabelError(LabelError):
    """An error that every further request would hit too (rejected API
    key, unknown model or endpoint): labelling stops."""


class AnswerError(ValueError):
    """The model's answer holds no usable label."""


# --------------------------------------------------------------------------
# Prompt, answers and cost
# --------------------------------------------------------------------------


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
        raise AnswerError(f"the answer is malformed JSON: {_short(text)}")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    head, rest = lines[0], " ".join(lines[1:])
    if len(head) > 2 * MAX_LABEL_CHARS:
        # One long paragraph: not a label
        raise AnswerError(f"the answer holds no label: {_short(text)}")
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


def _short(text, n=120):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def make_thumbnail(path, max_side=THUMBNAIL_SIZE, quality=JPEG_QUALITY):
    """Reads an image file and returns a JPEG thumbnail of it.

    The image is turned upright (EXIF orientation), converted to RGB
    (transparency over white) and shrunk so that its longest side is at
    most ``max_side`` pixels; smaller images keep their size.

    Args:
        path: an image file
        max_side (512): the longest side of the thumbnail, in pixels
        quality (85): the JPEG quality

    Returns:
        the JPEG bytes
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        w, h = img.size
        if img.format == "JPEG" and max(w, h) > max_side:
            # Let the JPEG decoder shrink by 1/2, 1/4 or 1/8 on the way,
            # never below the thumbnail's size
            scale = max_side / max(w, h)
            img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (
            img.mode == "P" and "transparency" in img.info
        ):
            img = img.convert("RGBA")
            background = Image.new("RGB", img.size, (255, 255, 255))
            background.paste(img, mask=img.getchannel("A"))
            img = background
        elif img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            arr = np.asarray(img, dtype=np.float32)
            lo, hi = float(arr.min()), float(arr.max())
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
            arr = ((arr - lo) * scale).astype(np.uint8)
            img = Image.fromarray(arr, "L").convert("RGB")
        elif img.mode != "RGB":
            img = img.convert("RGB")
        if max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()


def data_url(jpeg):
    """A ``data:`` URL of JPEG bytes."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


# --------------------------------------------------------------------------
# Choice of the images shown
# --------------------------------------------------------------------------


def select_members(
    ids, X, n, selection="representative", representatives=(), seed=0
):
    """Chooses which members of a cluster to show.

    ``"representative"`` shows the most typical members first (the run's
    ``representatives``, nearest the cluster centre), about half of ``n``,
    then completes with members spread over the cluster: farthest-point
    picks in embedding space, each the member farthest from those already
    chosen. ``"random"`` draws ``n`` members uniformly with ``seed``.

    Args:
        ids: the ids of the candidate members (a cluster, or a sample of
            it that contains its representatives)
        X: float32 matrix of their embeddings, rows aligned with ``ids``,
            or ``None`` (spread-out picks are then random)
        n: how many to choose
        selection ("representative"): one of :data:`SELECTIONS`
        representatives (()): ids of typical members, most typical first
        seed (0): seed (an int or a sequence of ints) of the random choices

    Returns:
        a list of at most ``n`` distinct ids from ``ids``
    """
    if selection not in SELECTIONS:
        raise ValueError(
            f"Unknown selection {selection!r}; use one of "
            f"{', '.join(SELECTIONS)}"
        )
    ids = list(ids)
    n = min(int(n), len(ids))
    if n <= 0:
        return []
    rng = np.random.default_rng(seed)
    if selection == "random":
        return [ids[i] for i in sorted(rng.choice(len(ids), n, False))]

    index = {_id: i for i, _id in enumerate(ids)}
    n_typical = n - n // 2
    chosen = []
    for _id in representatives:
        if len(chosen) == n_typical:
            break
        if _id in index and index[_id] not in chosen:
            chosen.append(index[_id])
    if not chosen:
        chosen.append(int(rng.integers(len(ids))))

    if X is None or len(X) != len(ids):
        rest = [i for i in rng.permutation(len(ids)) if i not in chosen]
        chosen += rest[: n - len(chosen)]
        return [ids[i] for i in chosen]

    X = np.asarray(X, dtype=np.float32)
    diff = X - X[chosen[0]]
    mind = np.einsum("ij,ij->i", diff, diff)
    for i in chosen[1:]:
        diff = X - X[i]
        np.minimum(mind, np.einsum("ij,ij->i", diff, diff), out=mind)
    mind[chosen] = -1.0
    while len(chosen) < n:
        i = int(np.argmax(mind))
        if mind[i] < 0:
            break
        chosen.append(i)
        diff = X - X[i]
        np.minimum(mind, np.einsum("ij,ij->i", diff, diff), out=mind)
        mind[chosen] = -1.0
    return [ids[i] for i in chosen]


# --------------------------------------------------------------------------
# LLM clients
# --------------------------------------------------------------------------


class Labeler:
    """The interface of a cluster-naming model.

    Implementations must be safe to call from several threads at once.

    Attributes:
        model: the model's name, stored with each label
    """

    model = None

    def label(self, images, prompt):
        """Names the cluster whose images are shown.

        Args:
            images: a list of JPEG thumbnails (bytes)
            prompt: the instruction text

        Returns:
            a :class:`ClusterLabel`

        Raises:
            LabelError: when no label could be obtained (the message says
                why); :class:`FatalLabelError` when further requests are
                pointless
        """
        raise NotImplementedError

    def cancel(self):
        """Asks requests that are waiting to be retried to give up."""


class OpenAILabeler(Labeler):
    """A :class:`Labeler` over the OpenAI chat-completions protocol.

    Uses the official ``openai`` client, so any OpenAI-compatible server
    works through ``base_url``. Answers are requested as structured output
    (a JSON schema with ``label`` and ``description``); servers that reject
    structured output are asked again without it, and answers in plain
    text, prose or code fences are read tolerantly.

    Retries are done here, not by the client: 429, 408, 409 and 5xx
    answers, timeouts, connection errors and unusable answers are retried
    up to ``max_retries`` times with exponential backoff (with jitter)
    starting at ``backoff_base`` seconds, or after the server's
    ``Retry-After`` when it sends one.

    Args:
        api_key: the API key (never logged nor put in an error message)
        model ("gpt-4.1-mini"): the model name
        base_url (None): the server's URL, e.g. ``http://host:8000/v1``;
            ``None`` uses OpenAI's
        timeout (60.0): seconds allowed for each request
        max_retries (4): retries of a request after the first attempt
        backoff_base (1.0): the first backoff delay in seconds
        backoff_max (30.0): the longest backoff delay in seconds
        max_retry_after (120.0): the longest ``Retry-After`` honoured
        detail ("low"): the image detail requested (thumbnails are at
            most 512 px, so ``"low"`` loses nothing and costs least)
        max_tokens (300): the longest answer allowed
        temperature (0.2): the sampling temperature, or ``None`` to leave
            the server's default
    """

    def __init__(
        self,
        api_key,
        model=DEFAULT_MODEL,
        base_url=None,
        timeout=60.0,
        max_retries=4,
        backoff_base=1.0,
        backoff_max=30.0,
        max_retry_after=120.0,
        detail="low",
        max_tokens=300,
        temperature=0.2,
    ):
        import openai

        if not api_key or not isinstance(api_key, str):
            raise LabelError("An API key is required")
        if detail not in DETAILS:
            raise ValueError(
                f"Unknown detail {detail!r}; use one of {', '.join(DETAILS)}"
            )
        self.model = model
        self.base_url = base_url
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.max_retry_after = float(max_retry_after)
        self.detail = detail
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.structured = True
        self._secret = api_key
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self.n_requests = 0
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=self.timeout,
            max_retries=0,
        )

    def __repr__(self):
        return (
            f"OpenAILabeler(model={self.model!r}, "
            f"base_url={display_url(self.base_url)!r})"
        )

    def cancel(self):
        self._cancel.set()

    def close(self):
        """Closes the HTTP connections."""
        self._client.close()

    def label(self, images, prompt):
        if not images:
            raise LabelError("no image to show")
        content = [{"type": "text", "text": prompt}]
        for jpeg in images:
            content.append(
                {
                    "type": "image_url",
                    "image_url": {
                        "url": data_url(jpeg),
                        "detail": self.detail,
                    },
                }
            )
        messages = [{"role": "user", "content": content}]

        attempt = 0
        while True:
            if self._cancel.is_set():
                raise LabelError("cancelled")
            structured = self.structured
            try:
                text = self._request(messages, structured)
                return parse_answer(text)
            except AnswerError as e:
                reason = f"unusable answer ({e})"
                retry_after = None
            except Exception as e:  # openai errors, classified below
                action, reason, retry_after = self._classify(e, structured)
                if action == "fallback":
                    continue
                if action == "fatal":
                    raise FatalLabelError(self._redact(reason)) from None
                if action == "fail":
                    raise LabelError(self._redact(reason)) from None
            if attempt >= self.max_retries:
                tries = attempt + 1
                raise LabelError(
                    self._redact(
                        f"{reason}; gave up after {tries} "
                        f"attempt{'s' if tries > 1 else ''}"
                    )
                ) from None
            delay = self._delay(attempt, retry_after)
            logger.info(
                "LLM request failed (%s); retrying in %.2f s",
                self._redact(reason),
                delay,
            )
            attempt += 1
            if self._cancel.wait(delay):
                raise LabelError(f"cancelled after: {self._redact(reason)}")

    def _request(self, messages, structured):
        kwargs = {}
        if structured:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "cluster_label",
                    "strict": True,
                    "schema": RESPONSE_SCHEMA,
                },
            }
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        with self._lock:
            self.n_requests += 1
        response = self._client.chat.completions.create(
            model=self.model,
            messages=messages,
            max_tokens=self.max_tokens,
            **kwargs,
        )
        usage = getattr(response, "usage", None)
        if usage is not None:
            with self._lock:
                self.usage["prompt_tokens"] += usage.prompt_tokens or 0
                self.usage["completion_tokens"] += usage.completion_tokens or 0
        choices = getattr(response, "choices", None) or []
        if not choices or choices[0].message is None:
            raise AnswerError("the answer has no message")
        message = choices[0].message
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise AnswerError(f"the model refused: {_short(refusal)}")
        return message.content

    def _classify(self, e, structured):
        """Returns ``(action, reason, retry_after)`` for an exception;
        action is ``"retry"``, ``"fallback"``, ``"fail"`` or ``"fatal"``."""
        import openai

        where = display_url(self.base_url)
        if isinstance(e, openai.APITimeoutError):
            return "retry", f"no answer within {self.timeout:g} s", None
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            detail = f": {_short(cause, 200)}" if cause else ""
            return "retry", f"could not connect to {where}{detail}", None
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            message = _status_message(e)
            retry_after = _retry_after(e.response)
            if status == 429:
                return (
                    "retry",
                    f"rate limited (HTTP 429){message}",
                    (retry_after),
                )
            if status >= 500 or status in (408, 409):
                return (
                    "retry",
                    f"server error (HTTP {status}){message}",
                    (retry_after),
                )
            if status in (401, 403):
                # The server's text may quote (part of) the key: drop it
                return (
                    "fatal",
                    f"the server at {where} rejected the API key (HTTP "
                    f"{status}); check OPENAI_API_KEY",
                    None,
                )
            if status == 404:
                return (
                    "fatal",
                    f"model '{self.model}' or its endpoint was not found "
                    f"at {where} (HTTP 404){message}",
                    None,
                )
            if (
                structured
                and status in (400, 422)
                and re.search(r"response_format|json_schema", message, re.I)
            ):
                logger.info(
                    "The server does not support structured output; "
                    "asking for plain JSON instead"
                )
                self.structured = False
                return "fallback", "", None
            return "fail", f"request rejected (HTTP {status}){message}", None
        if isinstance(e, openai.OpenAIError):
            return "retry", f"{type(e).__name__}: {_short(e, 200)}", None
        raise e

    def _delay(self, attempt, retry_after):
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        delay = min(self.backoff_max, self.backoff_base * 2**attempt)
        return delay * (0.5 + 0.5 * random.random())

    def _redact(self, text):
        text = str(text)
        if self._secret and self._secret in text:
            text = text.replace(self._secret, "***")
        return text


def display_url(base_url):
    """A server URL fit for messages: credentials in it are masked."""
    if not base_url:
        return "api.openai.com"
    return re.sub(r"//[^/@]*@", "//***@", str(base_url))


def _status_message(e):
    body = getattr(e, "body", None)
    message = None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = err.get("message")
        elif isinstance(err, str):
            message = err
    if not message:
        message = getattr(e, "message", "") or ""
    message = _short(message, 200)
    return f": {message}" if message else ""


def _retry_after(response):
    """Seconds to wait from a response's ``Retry-After`` (seconds or an
    HTTP date) or ``retry-after-ms`` header, or ``None``."""
    if response is None:
        return None
    headers = response.headers
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# --------------------------------------------------------------------------
# Labelling many clusters
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    """One cluster to name.

    Attributes:
        cluster_id: the cluster's id
        paths: the image files to show
        shown_ids: the ids of the samples shown, aligned with ``paths``
    """

    cluster_id: str
    paths: list
    shown_ids: list


@dataclasses.dataclass
class Outcome:
    """What became of one cluster.

    Attributes:
        cluster_id: the cluster's id
        label: a :class:`ClusterLabel`, or ``None`` on failure
        error: why it failed, or ``None``
        shown_ids: the ids of the samples whose images were sent
    """

    cluster_id: str
    label: object = None
    error: str = None
    shown_ids: list = dataclasses.field(default_factory=list)


def _run_job(job, labeler, prompt_fn, thumbnail_size, slots):
    """Makes a job's thumbnails, then sends it once a request slot is
    free."""
    images = []
    shown = []
    errors = []
    for path, _id in zip(job.paths, job.shown_ids):
        try:
            images.append(make_thumbnail(path, thumbnail_size))
            shown.append(_id)
        except Exception as e:  # unreadable file: show the others
            errors.append(f"{path}: {_short(e, 120)}")
    if errors:
        logger.warning(
            "Cluster %s: %d of %d images could not be read (%s)",
            job.cluster_id,
            len(errors),
            len(job.paths),
            errors[0],
        )
    if not images:
        first = errors[0] if errors else "no image"
        raise LabelError(f"none of its images could be read ({first})")
    with slots:
        label = labeler.label(images, prompt_fn(len(images)))
    return label, shown


def label_clusters(
    jobs,
    labeler,
    context=None,
    max_concurrency=8,
    on_outcome=None,
    progress=None,
    thumbnail_size=THUMBNAIL_SIZE,
):
    """Names clusters concurrently.

    Each job's images are turned into thumbnails and sent in one request;
    up to ``max_concurrency`` requests are in flight at once, while the
    thumbnails of the next jobs are being made. As each
    cluster finishes, ``on_outcome(outcome)`` is called in the calling
    thread, so labels can be stored while the others are still running.

    A cluster whose request keeps failing gets an :class:`Outcome` with the
    reason and the others go on. A :class:`FatalLabelError` (e.g. a
    rejected key) stops the clusters not yet sent; they are reported as
    failed with that reason and the error is re-raised after every
    finished cluster has been reported.

    Args:
        jobs: an iterable of :class:`Job`
        labeler: a :class:`Labeler`
        context (None): optional words about the dataset for the prompt
        max_concurrency (8): the most requests in flight at once
        on_outcome (None): a callable ``on_outcome(outcome)``
        progress (None): a callable ``progress(fraction, label)``
        thumbnail_size (512): the longest side of the images sent

    Returns:
        a list of :class:`Outcome`, one per job, in completion order

    Raises:
        FatalLabelError: if labelling had to stop
    """
    jobs = list(jobs)
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    outcomes = []
    total = len(jobs)
    fatal = None

    def prompt_fn(n):
        return build_prompt(n, context)

    def report(outcome):
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        if progress is not None:
            progress(
                len(outcomes) / total,
                f"Labelled {len(outcomes)} of {total} clusters",
            )

    # Twice as many workers as request slots: while requests are in
    # flight, the next jobs' thumbnails are made, so a slot that frees up
    # is used at once
    slots = threading.BoundedSemaphore(max_concurrency)
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=min(2 * max_concurrency, max(1, total)),
        thread_name_prefix="label",
    )
    try:
        futures = {
            pool.submit(
                _run_job, job, labeler, prompt_fn, thumbnail_size, slots
            ): job
            for job in jobs
        }
        for future in concurrent.futures.as_completed(futures):
            job = futures[future]
            if future.cancelled():
                continue
            try:
                label, shown = future.result()
            except FatalLabelError as e:
                if fatal is None:
                    fatal = e
                    labeler.cancel()
                    for f in futures:
                        f.cancel()
                report(Outcome(job.cluster_id, error=str(e)))
                continue
            except LabelError as e:
                error = str(e)
                if fatal is not None and error == "cancelled":
                    error = f"not sent: {fatal}"
                report(Outcome(job.cluster_id, error=error))
                continue
            except Exception as e:
                logger.exception("Labelling cluster %s", job.cluster_id)
                report(
                    Outcome(
                        job.cluster_id,
                        error=f"{type(e).__name__}: {_short(e, 200)}",
                    )
                )
                continue
            report(Outcome(job.cluster_id, label, shown_ids=shown))
        for future, job in futures.items():
            if future.cancelled():
                report(Outcome(job.cluster_id, error=f"not sent: {fatal}"))
    except BaseException:
        labeler.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if fatal is not None:
        raise fatal
    return outcomes
