"""A local HTTP server that speaks the OpenAI chat-completions protocol.

It stands in for a multimodal LLM in tests and benchmarks: the real
``openai`` client talks to it over HTTP on 127.0.0.1. It decodes every
image it receives, checks that each is a JPEG data URL of at most 512 px,
and names a cluster after the dominant colour of its images ("Red images",
"Green images", ...), so a test can check that each cluster got the label
its own images call for.

Faults are injected with :meth:`LLMServer.inject`: rate limits (429 with
``Retry-After``), server errors (500), answers slower than the client's
timeout, malformed content and rejected keys, for every request or only for
requests whose images have a given colour.

Example::

    with LLMServer(latency=0.5) as server:
        client = openai.OpenAI(base_url=server.url, api_key="test")
"""

import base64
import binascii
import io
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

MAX_SIDE = 512
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 220, 30),
    "gray": (128, 128, 128),
}


def colour_name(rgb):
    """The name in :data:`COLOURS` nearest to a mean RGB colour."""
    rgb = np.asarray(rgb, dtype=np.float32)
    names = list(COLOURS)
    refs = np.asarray([COLOURS[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((refs - rgb) ** 2).sum(axis=1)))]


class Injection:
    """A fault served instead of a normal answer.

    Args:
        action: ``"rate_limit"`` (429), ``"server_error"`` (500),
            ``"slow"`` (sleep ``seconds``, then answer normally),
            ``"content"`` (answer with ``content`` as the message),
            ``"unauthorized"`` (401 whose message quotes the key),
            ``"bad_request"`` (400)
        times: how many matching requests it applies to (``None``: all)
        colour: only requests whose images are mostly this colour
        seconds: the delay of ``"slow"``
        retry_after: the ``Retry-After`` header of ``"rate_limit"``
            (a string), or ``None`` to send none
        content: the message content of ``"content"``
    """

    def __init__(
        self,
        action,
        times=1,
        colour=None,
        seconds=2.0,
        retry_after="0",
        content="",
    ):
        self.action = action
        self.times = times
        self.colour = colour
        self.seconds = seconds
        self.retry_after = retry_after
        self.content = content
        self.served = 0


class LLMServer:
    """A threaded chat-completions server on 127.0.0.1.

    Args:
        latency (0.0): seconds each answer takes
        api_key (None): if set, requests must carry ``Bearer <api_key>``
        structured (True): whether ``response_format`` is supported; when
            False, requests with a JSON-schema ``response_format`` get a 400
            answer as some servers do
        style ("json"): how answers are written when no JSON schema was
            asked for: ``"json"``, ``"fenced"`` (a Markdown code fence in
            prose), ``"prose"`` (JSON inside a sentence) or ``"plain"``
            (``Label: ...`` / ``Description: ...`` lines)

    Attributes:
        url: the base URL to give the client (ends in ``/v1``)
        requests: one dict per request received (model, images, sizes,
            whether a schema was asked, the colour seen, the answer status)
        violations: what was wrong with requests (non-JPEG images, images
            over 512 px, bad data URLs); tests expect it empty
        max_in_flight: the most requests handled at the same time
    """

    def __init__(
        self, latency=0.0, api_key=None, structured=True, style="json"
    ):
        self.latency = latency
        self.api_key = api_key
        self.structured = structured
        self.style = style
        self.requests = []
        self.violations = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._injections = []
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    # -- faults ------------------------------------------------------------

    def inject(self, action, times=1, colour=None, **kwargs):
        """Serves a fault instead of the next ``times`` matching answers
        (every one when ``times`` is None); see :class:`Injection`."""
        inj = Injection(action, times=times, colour=colour, **kwargs)
        with self._lock:
            self._injections.append(inj)
        return inj

    def clear(self):
        """Removes every injection and forgets past requests."""
        with self._lock:
            self._injections = []
            self.requests = []
            self.violations = []
            self.max_in_flight = 0

    def _take_injection(self, colour):
        with self._lock:
            for inj in self._injections:
                if inj.colour is not None and inj.colour != colour:
                    continue
                if inj.times is not None and inj.served >= inj.times:
                    continue
                inj.served += 1
                return inj
        return None

    # -- requests ----------------------------------------------------------

    def _enter(self):
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self):
        with self._lock:
            self._in_flight -= 1

    def _inspect(self, body):
        """Decodes the images of a request; returns ``(record, colour)``."""
        record = {
            "time": time.monotonic(),
            "model": body.get("model"),
            "schema": (body.get("response_format") or {}).get("type")
            == "json_schema",
            "images": 0,
            "sizes": [],
            "details": [],
            "text": "",
        }
        means = []
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                record["text"] += content
                continue
            for part in content or []:
                if part.get("type") == "text":
                    record["text"] += part.get("text", "")
                elif part.get("type") == "image_url":
                    image_url = part.get("image_url") or {}
                    record["details"].append(image_url.get("detail"))
                    size, mean = self._decode(image_url.get("url", ""))
                    record["images"] += 1
                    if size is not None:
                        record["sizes"].append(size)
                        means.append(mean)
        colour = None
        if means:
            names = [colour_name(m) for m in means]
            colour = max(set(names), key=names.count)
        record["colour"] = colour
        return record, colour

    def _decode(self, url):
        prefix = "data:image/jpeg;base64,"
        if not url.startswith(prefix):
            self._violation(f"not a JPEG data URL: {url[:40]!r}")
            return None, None
        try:
            raw = base64.b64decode(url[len(prefix) :], validate=True)
            with Image.open(io.BytesIO(raw)) as img:
                fmt = img.format
                size = img.size
                # The mean colour needs no full-resolution decode
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                arr = np.asarray(img.convert("RGB"), dtype=np.float32)
        except (binascii.Error, OSError, ValueError) as e:
            self._violation(f"undecodable image: {e}")
            return None, None
        if fmt != "JPEG":
            self._violation(f"image is {fmt}, not JPEG")
        if max(size) > MAX_SIDE:
            self._violation(f"image of {size[0]}x{size[1]} px > {MAX_SIDE}")
        return size, arr.reshape(-1, 3).mean(axis=0)

    def _violation(self, text):
        with self._lock:
            self.violations.append(text)

    def _answer_content(self, colour, schema):
        name = f"{(colour or 'unknown').capitalize()} images"
        description = f"Pictures that are mostly {colour or 'unknown'}."
        obj = json.dumps({"label": name, "description": description})
        if schema or self.style == "json":
            return obj
        if self.style == "fenced":
            return f"Here is the label you asked for:\n```json\n{obj}\n```"
        if self.style == "prose":
            return f"Sure! {obj} I hope this helps."
        if self.style == "plain":
            return f"Label: {name}\nDescription: {description}"
        raise ValueError(f"unknown style {self.style!r}")


def _completion(model, content):
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "total_tokens": 120,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    owner = None
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's
    # algorithm and delayed ACKs add about 40 ms to every answer
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _send(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)

    def _error(self, status, message, kind, headers=None):
        self._send(
            status,
            {"error": {"message": message, "type": kind, "code": None}},
            headers,
        )

    def do_POST(self):
        server = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"Unknown path {self.path}", "not_found")
            return
        server._enter()
        try:
            self._complete(server, raw)
        finally:
            server._leave()

    def _complete(self, server, raw):
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "Request body is not JSON", "invalid_request")
            return
        record, colour = server._inspect(body)
        with server._lock:
            server.requests.append(record)
        auth = self.headers.get("Authorization", "")
        key = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if server.api_key is not None and key != server.api_key:
            record["status"] = 401
            self._error(
                401,
                f"Incorrect API key provided: {key}",
                "invalid_request_error",
            )
            return
        if record["schema"] and not server.structured:
            record["status"] = 400
            self._error(
                400,
                "response_format of type json_schema is not supported",
                "invalid_request_error",
            )
            return
        if record["images"] == 0:
            record["status"] = 400
            self._error(400, "No image in the request", "invalid_request")
            return

        inj = server._take_injection(colour)
        action = inj.action if inj else None
        record["injected"] = action
        if action == "rate_limit":
            record["status"] = 429
            headers = {}
            if inj.retry_after is not None:
                headers["Retry-After"] = inj.retry_after
            self._error(429, "Rate limit reached", "rate_limit", headers)
            return
        if action == "server_error":
            record["status"] = 500
            self._error(500, "Internal server error", "server_error")
            return
        if action == "unauthorized":
            record["status"] = 401
            self._error(
                401,
                f"Incorrect API key provided: {key}",
                "invalid_request_error",
            )
            return
        if action == "bad_request":
            record["status"] = 400
            self._error(400, "Invalid image", "invalid_request_error")
            return

        delay = server.latency + (inj.seconds if action == "slow" else 0.0)
        if delay:
            time.sleep(delay)
        if action == "content":
            content = inj.content
        else:
            content = server._answer_content(colour, record["schema"])
        record["status"] = 200
        self._send(200, _completion(body.get("model"), content))
