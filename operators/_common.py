"""Pieces shared by the operators: forms generated from parameter schemas,
delegation, progress, target views, and the ends of ``execute`` and
``__call__``."""

import logging
import threading
import time

import fiftyone.core.fields as fof
import fiftyone.operators as foo
import fiftyone.operators.types as types

from .. import api

logger = logging.getLogger(__name__)

# Keys the App adds to an operator's params that are not the operator's own
# (a form opened from a panel carries the panel's id and state)
APP_KEYS = ("view_target", "delegate", "panel_id", "panel_state")

# Views with more samples than this run delegated unless the user chooses
DELEGATION_THRESHOLD = {
    "compute_embeddings": 500,
    "compute_clusters": 20000,
    "compute_projection": 20000,
    "label_clusters": 0,
}

# The icon of the operators that compute
ICON = "/assets/icon.svg"

# The arguments of an operator's __call__ that are not params of the
# operator (see call_from_python)
_CALL_ONLY = ("self", "sample_collection", "params")


# ----------------------------------------------------------------------
# Form inputs
# ----------------------------------------------------------------------


def mark_invalid(inputs, key, message):
    """Marks the input ``key`` of ``inputs`` invalid, with ``message``
    shown under it."""
    prop = inputs.get_property(key)
    prop.invalid = True
    prop.error_message = message


def check_input(inputs, key, check, *args, **kwargs):
    """Calls ``check(*args, **kwargs)`` and marks the input ``key`` invalid
    with the message of the ``ValueError`` it raises, if any."""
    try:
        check(*args, **kwargs)
    except ValueError as e:
        mark_invalid(inputs, key, str(e))


def add_schema_inputs(inputs, registry, name, ctx, defaults=None):
    """Adds one input per parameter of component ``name`` of ``registry``,
    keyed ``<name>__<param>``."""
    params = registry.get(name).params
    add_param_inputs(inputs, params, ctx, prefix=name, defaults=defaults)


def add_param_inputs(
    inputs, params, ctx, prefix=None, defaults=None, labels=None, choices=None
):
    """Adds one input per :class:`core.schema.Param` of ``params``, keyed
    ``<prefix>__<param>`` (or ``<param>`` without a prefix), with its
    label, help, bounds and default, and marks a value already in the form
    that the schema refuses as invalid, with the schema's message.

    Args:
        inputs: the :class:`types.Object` of the form
        params: the :class:`core.schema.Param` s, in the form's order
        ctx: the execution context
        prefix (None): the prefix of the inputs' keys
        defaults (None): a dict ``param name -> default`` for the defaults
            that differ from the schema's
        labels (None): a dict ``param name -> label`` for the labels that
            say more than the parameter's name
        choices (None): a dict ``param name -> {value: (label,
            description)}`` for the choices of a parameter that say more
            than the value
    """
    defaults = defaults or {}
    labels = labels or {}
    choices = choices or {}
    for p in params:
        key = f"{prefix}__{p.name}" if prefix else p.name
        default = defaults.get(p.name, p.default)
        label = labels.get(p.name)
        _add_param_input(
            inputs, key, p, default, label, choices.get(p.name, {})
        )
        value = ctx.params.get(key, default)
        if value is not None and value != "":
            check_input(inputs, key, p.validate, value, owner=prefix or "")


def _add_param_input(inputs, key, p, default, label=None, choices=None):
    """The input of one parameter, by its type; ``label`` and ``choices``
    (``value -> (label, description)``) replace the names derived from the
    parameter and its values."""
    description = p.help
    allowed = p.describe()
    if allowed and p.choices is None:
        description = f"{description} ({allowed})"
    kwargs = dict(
        label=label or p.name.replace("_", " ").capitalize(),
        description=description,
        # not required: the API fills in defaults for omitted params
        required=False,
    )
    if default is not None:
        kwargs["default"] = default
    if p.choices is not None:
        view = types.Dropdown()
        for c in p.choices:
            name, text = (choices or {}).get(c, (str(c), None))
            view.add_choice(c, label=name, description=text)
        inputs.enum(key, view.values(), view=view, **kwargs)
    elif p.type is bool:
        inputs.bool(key, view=types.CheckboxView(), **kwargs)
    elif p.type is int:
        inputs.int(key, min=p.min, max=p.max, **kwargs)
    elif p.type is float:
        inputs.float(key, min=p.min, max=p.max, **kwargs)
    else:
        inputs.str(key, **kwargs)


def _add_enum(inputs, key, choices, **kwargs):
    inputs.enum(key, choices.values(), view=choices, **kwargs)


def add_choice_input(inputs, key, registry, default, label, description):
    """Adds a dropdown of the components of ``registry``; returns the
    input's property and its choices."""
    choices = types.Dropdown()
    for cls in registry.classes():
        choices.add_choice(
            cls.name, label=cls.label, description=cls.description
        )
    _add_enum(
        inputs,
        key,
        choices,
        default=default,
        required=True,
        label=label,
        description=description,
    )
    return inputs.get_property(key), choices


def add_dropdown_input(
    inputs, key, names, default, label, description, required=False
):
    """Adds a dropdown of plain string choices."""
    choices = types.DropdownView()
    for name in names:
        choices.add_choice(name, label=name)
    _add_enum(
        inputs,
        key,
        choices,
        default=default,
        required=required,
        label=label,
        description=description,
    )


def add_run_choice_input(
    inputs, ctx, key="run_key", label="Run key", description=None, latest=False
):
    """Adds a dropdown of the dataset's clustering runs, preset to the
    latest with ``latest``; returns the run chosen, or ``None`` (and a
    warning) when the dataset has no runs."""
    keys = api.list_clustering_runs(ctx.dataset)
    if not keys:
        inputs.view(
            "no_runs",
            types.Warning(
                label="This dataset has no clustering runs yet",
                description="Run `compute_clusters` first",
            ),
        )
        return None
    default = keys[-1] if latest else None
    add_dropdown_input(
        inputs, key, keys, default, label, description, required=True
    )
    return ctx.params.get(key, default)


def add_skip_missing_input(inputs):
    """Adds the 'skip samples without embeddings' checkbox."""
    inputs.bool(
        "skip_missing",
        default=False,
        label="Skip samples without embeddings",
        view=types.CheckboxView(),
    )


def add_target_view_input(inputs, ctx, action):
    """Adds the dataset / current view / selected samples choice."""
    inputs.view_target(ctx, action_description=action)


def vector_fields(ctx):
    """The names of the dataset's vector fields, for field choices."""
    schema = ctx.dataset.get_field_schema(flat=True)
    return sorted(
        name
        for name, f in schema.items()
        if isinstance(f, (fof.VectorField, fof.ArrayField))
    )


# ----------------------------------------------------------------------
# Configs and delegation
# ----------------------------------------------------------------------


def light_config(name, label, description=None):
    """An :class:`OperatorConfig` for an operator that runs at once."""
    return foo.OperatorConfig(
        name=name, label=label, description=description, dynamic=True
    )


def heavy_config(name, label, description, **kwargs):
    """An :class:`OperatorConfig` for an operator that may be delegated."""
    return foo.OperatorConfig(
        name=name,
        label=label,
        description=description,
        dynamic=True,
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=False,
        **kwargs,
    )


def _target_size(ctx):
    if ctx.dataset is None:
        return 0
    return ctx.target_view().count()


def delegates_by_default(ctx, operator_name):
    """Whether ``operator_name`` runs delegated unless the user chooses:
    whether its target view has more samples than the operator's
    :data:`DELEGATION_THRESHOLD`."""
    return _target_size(ctx) > DELEGATION_THRESHOLD[operator_name]


def add_delegation_input(inputs, ctx, operator_name):
    """Adds a 'delegate' checkbox whose default depends on the view size
    (see :func:`delegates_by_default`)."""
    threshold = DELEGATION_THRESHOLD[operator_name]
    inputs.bool(
        "delegate",
        default=delegates_by_default(ctx, operator_name),
        label="Delegate execution?",
        description=(
            f"Run in the background with `fiftyone delegated launch` "
            f"(default for views of more than {threshold:,} samples)"
        ),
        view=types.CheckboxView(),
    )


def resolve_delegation(ctx, operator_name):
    """Whether to run delegated.

    Yes when delegation was requested (the App's *Schedule* button, or
    ``request_delegation=True`` / ``delegate=True`` from Python); otherwise
    the form's ``delegate`` choice; otherwise whether the target view has
    more samples than the operator's :data:`DELEGATION_THRESHOLD`.

    The answer is always ``True`` or ``False``, never ``None``: FiftyOne
    then offers the App's one matching button (*Execute* or *Schedule*), so
    the form's checkbox is the only delegation choice the user sees.
    """
    if ctx.requesting_delegated_execution:
        return True
    delegate = ctx.params.get("delegate", None)
    if delegate is not None:
        return bool(delegate)
    return delegates_by_default(ctx, operator_name)


class HeavyOperator(foo.Operator):
    """An operator that may run delegated.

    A subclass declares ``CONFIG = (name, label, description)``; its config
    (:func:`heavy_config`), its ``resolve_delegation`` and the end of its
    form (:meth:`finish_form`) follow from it.
    """

    CONFIG = None

    @property
    def config(self):
        return heavy_config(*self.CONFIG, icon=ICON)

    def resolve_delegation(self, ctx):
        return resolve_delegation(ctx, self.name)

    def finish_form(self, inputs, ctx):
        """Ends the form: adds the 'delegate' checkbox and returns the
        form, titled with the operator's label."""
        add_delegation_input(inputs, ctx, self.name)
        return types.Property(inputs, view=types.View(label=self.config.label))


# ----------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------


def form_params(ctx, drop=(), drop_blank=False):
    """The form's values as parameters of the API call: ``ctx.params``
    without the App's keys (:data:`APP_KEYS`), the keys in ``drop`` and
    the values left empty (``None``, and with ``drop_blank`` also ``""``,
    which a text input cleared in the App sends)."""
    skip = set(APP_KEYS).union(drop)
    return {
        k: v
        for k, v in ctx.params.items()
        if k not in skip and v is not None and not (drop_blank and v == "")
    }


def run_api(ctx, function, samples, params, reload=True):
    """What an operator's ``execute`` does: calls the API's ``function``
    on ``samples`` with the dict ``params`` and a progress reporter for
    ``ctx``, then, after an immediate run and with ``reload``, reloads the
    dataset in the App.

    Returns:
        what ``function`` returns
    """
    result = function(samples, progress=progress_reporter(ctx), **params)
    if reload and not ctx.delegated:
        ctx.trigger("reload_dataset")
    return result


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
