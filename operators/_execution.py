"""How an operator's API call runs, by where the request came from.

- From the App's form (or a panel's prompt), immediately: the call runs in a
  worker thread while ``execute`` is a generator that yields the progress
  (``set_progress``: percent and stage) to the App, then reloads the
  dataset and shows the result in the same dialog as the progress
  (``show_output``); a failure reaches the App as one readable line, not a
  traceback.
- Delegated (``fiftyone delegated launch``): the progress is recorded on the
  operation through ``ctx.set_progress``; the result is returned.
- From Python (``foo.execute_operator`` or an operator's ``__call__``): the
  call runs in this thread and its result is returned (a generator would be
  exhausted by FiftyOne and its result lost); errors raise.
"""

import json
import logging
import queue
import threading
import time

import numpy as np

import fiftyone.operators as foo
import fiftyone.operators.types as types
from fiftyone.operators.executor import ExecutionResult
from fiftyone.operators.message import GeneratedMessage, MessageType

logger = logging.getLogger(__name__)

# Request keys the App sends with every operator request (its sidebar
# filters, extended selection and selection style) and that
# ``foo.execute_operator`` never sets
APP_REQUEST_KEYS = ("filters", "extended", "sample_selection_style")

# The arguments of an operator's __call__ that are not params of the
# operator (see call_from_python)
_CALL_ONLY = ("self", "sample_collection", "params")

# The plugin's errors, whose message is written for the user: shown as
# they are (others with their type)
_USER_ERRORS = (
    "InputError",
    "ParamError",
    "ImageError",
    "WeightsError",
    "LabelError",
    "FatalLabelError",
)


def from_app(ctx):
    """Whether the request came from the App (an operator form, or a
    panel's prompt) rather than from Python's ``foo.execute_operator``."""
    request = getattr(ctx, "request_params", None) or {}
    return any(key in request for key in APP_REQUEST_KEYS)


def timed(function):
    """``function`` with its wall time added to its result (a dict), as
    ``elapsed_s``."""

    def call(*args, **kwargs):
        t0 = time.perf_counter()
        out = function(*args, **kwargs)
        return dict(out, elapsed_s=round(time.perf_counter() - t0, 2))

    return call


def run_api(ctx, function, samples, params, reload=True, output=None):
    """What an operator's ``execute`` does: calls the API's ``function``
    on ``samples`` with the dict ``params`` and a progress reporter.

    From the App, immediately, this returns a generator that streams the
    progress and then the result (see :func:`stream_api`); delegated or
    from Python, it returns the result. With ``reload``, an immediate run
    reloads the dataset in the App, so the sidebar shows the new fields.

    Args:
        ctx: the execution context
        function: the API function
        samples: the collection to call it on
        params: a dict of its keyword arguments
        reload (True): whether an immediate run reloads the App's dataset
        output (None): ``output(result) -> types.Property``, the view of
            the result the App shows

    Returns:
        what ``function`` returns, or a generator of App messages
    """
    if not ctx.delegated and from_app(ctx):
        return stream_api(
            ctx, function, samples, params, reload=reload, output=output
        )
    result = function(samples, progress=progress_reporter(ctx), **params)
    if reload and not ctx.delegated:
        ctx.trigger("reload_dataset")
    return result


def stream_api(
    ctx, function, samples, params, reload=True, output=None, every=0.5
):
    """Runs ``function(samples, progress=..., **params)`` in a worker thread
    and yields App messages: the progress at most every ``every`` seconds
    (``set_progress`` with the percent and the stage, in a dialog of its
    own), then a dataset reload (with ``reload``), the view ``output``
    makes of the result in place of the progress (``show_output``) and the
    result, for the callbacks of the form's opener; or, on failure, the
    error in place of the progress and as the run's error (the App adds a
    toast), one readable line (the traceback goes to the server log)."""
    updates = queue.Queue()
    outcome = {}

    def work():
        try:
            outcome["result"] = function(
                samples,
                progress=lambda f, label=None: updates.put((f, label)),
                **params,
            )
        except Exception as e:
            logger.exception("%s failed", ctx.operator_uri)
            outcome["error"] = one_line_error(e)
        finally:
            updates.put(None)

    thread = threading.Thread(target=work, name="curate-operator")
    thread.daemon = True
    thread.start()
    yield _progress(ctx, 0.0, "starting")
    for fraction, label in _throttled(updates, every):
        yield _progress(ctx, fraction, label)
    thread.join()
    if "error" in outcome:
        message = outcome["error"]
        yield _show(ctx, _failure_view(ctx, message), {})
        yield Failure(message)
        return
    if reload:
        yield ctx.trigger("reload_dataset")
    if output is not None:
        yield _show(ctx, output(outcome["result"]), outcome["result"])
    yield GeneratedMessage(
        MessageType.SUCCESS, cls=ExecutionResult, body=_Body(outcome["result"])
    )


def _throttled(updates, every):
    """The ``(fraction, label)`` updates of ``updates`` until ``None``, at
    most one per ``every`` seconds: the latest of those that came in the
    meantime, and a stage's first update at once."""
    pending, last, sent = None, float("-inf"), None
    while True:
        wait = max(0.0, last + every - time.monotonic())
        try:
            item = updates.get(timeout=wait if pending is not None else None)
        except queue.Empty:
            item = False
        if item is None:
            return
        if item is not False:
            pending = item
            new_stage = sent is None or item[1] != sent[1]
            if not new_stage and time.monotonic() < last + every:
                continue
        if pending is not None:
            sent, pending, last = pending, None, time.monotonic()
            yield sent


def _progress(ctx, fraction, label):
    fraction = min(max(float(fraction), 0.0), 1.0)
    text = f"{round(100 * fraction)}%"
    if label:
        text = f"{text}: {str(label).replace('_', ' ')}"
    return ctx.trigger("set_progress", {"progress": fraction, "label": text})


def _show(ctx, view, result):
    """Shows ``view`` of ``result`` in the App's output dialog (where the
    progress was)."""
    return ctx.trigger(
        "show_output",
        {"outputs": view.to_json(), "results": _Body(result).to_json()},
    )


def _failure_view(ctx, message):
    outputs = types.Object()
    name = ctx.operator_uri.rsplit("/", 1)[-1].replace("_", " ")
    outputs.view(
        "error",
        types.Error(label=f"{name.capitalize()} failed", description=message),
    )
    return types.Property(outputs, view=types.View(label="Failed"))


def one_line_error(error):
    """An exception as one line a user can read: the message of the
    plugin's own errors as it is, other errors with their type."""
    message = " ".join(str(error).split()) or type(error).__name__
    if type(error).__name__ in _USER_ERRORS:
        return message
    return f"{type(error).__name__}: {message}"


class Failure(GeneratedMessage):
    """The message that ends a failed run in the App: the App takes its
    ``error`` as the run's error and shows it under the form."""

    def __init__(self, message):
        super().__init__(MessageType.ERROR)
        self.message = message

    def to_json(self):
        return {
            "type": str(self.type),
            "cls": "Error",
            "body": None,
            "error": self.message,
            "error_message": self.message,
        }


class _Body:
    """The body of the result message: the result, made JSON-ready."""

    def __init__(self, result):
        self.result = result

    def to_json(self):
        return json.loads(json.dumps(self.result, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def progress_reporter(ctx, every=1.0):
    """Returns ``progress(fraction, label=None)`` for the API's long calls.

    In a delegated run it records the progress on the run through
    ``ctx.set_progress``, where ``fiftyone delegated list`` and
    ``fiftyone delegated info`` show it; in an immediate run it logs.
    Updates go out at most once per ``every`` seconds, the first and the
    final one at once; an update held back goes out ``every`` seconds after
    the previous one even when no further update comes (a long stage shows
    its own label, not the previous stage's).
    """
    delegated = getattr(ctx, "delegated", True)
    lock = threading.Lock()
    state = {"last": float("-inf"), "pending": None, "timer": None}

    def send(fraction, label):
        state["last"] = time.monotonic()
        if not delegated:
            logger.info("%3d%% %s", round(100 * fraction), label or "")
            return
        try:
            ctx.set_progress(progress=fraction, label=label)
        except Exception as e:  # progress must never stop the computation
            logger.debug("Could not record progress: %s", e)

    def flush():
        with lock:
            state["timer"] = None
            pending, state["pending"] = state["pending"], None
            if pending is not None:
                send(*pending)

    def progress(fraction, label=None):
        fraction = min(max(float(fraction), 0.0), 1.0)
        with lock:
            wait = state["last"] + every - time.monotonic()
            if fraction >= 1 or wait <= 0:
                if state["timer"] is not None:
                    state["timer"].cancel()
                    state["timer"] = None
                state["pending"] = None
                send(fraction, label)
                return
            state["pending"] = (fraction, label)
            if state["timer"] is None:
                timer = threading.Timer(wait, flush)
                timer.daemon = True
                state["timer"] = timer
                timer.start()

    return progress


def call_operator(operator, sample_collection, params, delegate=False):
    """Runs ``operator`` on a collection from Python, the way the App does.

    This is what the operators' ``__call__`` methods use (through
    :func:`call_from_python`), so that
    ``foo.get_operator(uri)(dataset_or_view, ...)`` works. With
    ``delegate=True`` the operation is queued instead, with the view it was
    given, for ``fiftyone delegated launch`` to run.

    Returns:
        an :class:`fiftyone.operators.executor.ExecutionResult` (inside a
        running event loop, such as a notebook, an ``asyncio.Task`` that
        resolves to it); for a queued operation its ``result`` is the
        queued operation's document, whose ``id`` identifies it in
        ``fiftyone delegated list``
    """
    ctx = dict(view=sample_collection.view())
    result = foo.execute_operator(
        operator.uri,
        ctx,
        params={k: v for k, v in params.items() if v is not None},
        request_delegation=bool(delegate),
    )
    if getattr(result, "delegated", False):
        op_id = (result.result or {}).get("id")
        logger.info(
            "Queued %s as delegated operation %s; `fiftyone delegated "
            "launch` runs it",
            operator.uri,
            op_id,
        )
    return result


def call_from_python(operator, arguments):
    """What an operator's ``__call__`` does: runs the operator on its
    collection with the call's arguments as params (see
    :func:`call_operator`), queued when they say ``delegate=True``.

    Args:
        operator: the operator
        arguments: the ``__call__``'s ``locals()`` taken before it sets any
            other name: ``self``, ``sample_collection``, one entry per
            named parameter, and ``params``, the dict of its
            ``**params``, if it has them

    Returns:
        what :func:`call_operator` returns
    """
    params = {k: v for k, v in arguments.items() if k not in _CALL_ONLY}
    params.update(arguments.get("params") or {})
    return call_operator(
        operator,
        arguments["sample_collection"],
        params,
        params.get("delegate", False),
    )
