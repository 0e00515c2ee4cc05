"""The model behind cluster names: the :class:`Labeler` interface and
:class:`OpenAILabeler`, the official ``openai`` client against any
OpenAI-compatible server, with retries that honour ``Retry-After``.

The API key is held by the client only: it never appears in a log line or
an error message raised from here.
"""

import email.utils
import logging
import random
import re
import threading
import time

import openai

from .answers import RESPONSE_SCHEMA, AnswerError, parse_answer, shorten
from .images import data_url
from .options import DEFAULT_MODEL, DETAILS

logger = logging.getLogger(__name__)


class LabelError(RuntimeError):
    """A cluster could not be labelled; the message says why."""


class FatalLabelError(LabelError):
    """An error that every further request would hit too (rejected API
    key, unknown model or endpoint): labelling stops."""


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
            raise AnswerError(f"the model refused: {shorten(refusal)}")
        return message.content

    def _classify(self, e, structured):
        """Returns ``(action, reason, retry_after)`` for an exception;
        action is ``"retry"``, ``"fallback"``, ``"fail"`` or ``"fatal"``."""
        where = display_url(self.base_url)
        if isinstance(e, openai.APITimeoutError):
            return "retry", f"no answer within {self.timeout:g} s", None
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e.__context__
            detail = f": {shorten(cause, 200)}" if cause else ""
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
            return "retry", f"{type(e).__name__}: {shorten(e, 200)}", None
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
    message = shorten(message, 200)
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
