"""Pieces shared by the operators: forms generated from parameter schemas,
delegation, progress and target views."""

import logging
import threading
import time

import fiftyone.operators as foo
import fiftyone.operators.types as types

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


def add_schema_inputs(inputs, registry, name, ctx, defaults=None):
    """Adds one input per parameter of component ``name`` of ``registry``,
    keyed ``<name>__<param>``."""
    cls = registry.get(name)
    defaults = defaults or {}
    for p in cls.params:
        key = f"{name}__{p.name}"
        default = defaults.get(p.name, p.default)
        description = p.help
        allowed = p.describe()
        if allowed and p.choices is None:
            description = f"{description} ({allowed})"
        kwargs = dict(
            label=p.name.replace("_", " ").capitalize(),
            description=description,
            # not required: the API fills in defaults for omitted params
            required=False,
        )
        if default is not None:
            kwargs["default"] = default
        if p.choices is not None:
            choices = types.Dropdown()
            for c in p.choices:
                choices.add_choice(c, label=str(c))
            inputs.enum(key, choices.values(), view=choices, **kwargs)
        elif p.type is bool:
            inputs.bool(key, view=types.CheckboxView(), **kwargs)
        elif p.type is int:
            inputs.int(key, min=p.min, max=p.max, **kwargs)
        elif p.type is float:
            inputs.float(key, min=p.min, max=p.max, **kwargs)
        else:
            inputs.str(key, **kwargs)
        value = ctx.params.get(key, default)
        if value is not None and value != "":
            try:
                p.validate(value, owner=name)
            except ValueError as e:
                prop = inputs.get_property(key)
                prop.invalid = True
                prop.error_message = str(e)


def add_choice_input(inputs, key, registry, default, label, description):
    """Adds a dropdown of the components of ``registry``; returns the
    chosen name."""
    choices = types.Dropdown()
    for cls in registry.classes():
        choices.add_choice(
            cls.name, label=cls.label, description=cls.description
        )
    inputs.enum(
        key,
        choices.values(),
        default=default,
        required=True,
        label=label,
        description=description,
        view=choices,
    )
    return inputs.get_property(key), choices


def add_dropdown_input(
    inputs, key, names, default, label, description, required=False
):
    """Adds a dropdown of plain string choices."""
    choices = types.DropdownView()
    for name in names:
        choices.add_choice(name, label=name)
    inputs.enum(
        key,
        choices.values(),
        default=default,
        required=required,
        label=label,
        description=description,
        view=choices,
    )


def add_delegation_input(inputs, ctx, operator_name):
    """Adds a 'delegate' checkbox whose default depends on the view size."""
    threshold = DELEGATION_THRESHOLD[operator_name]
    n = ctx.target_view().count() if ctx.dataset is not None else 0
    inputs.bool(
        "delegate",
        default=n > threshold,
        label="Delegate execution?",
        description=(
            f"Run in the background with `fiftyone delegated launch` "
            f"(default for views of more than {threshold:,} samples)"
        ),
        view=types.CheckboxView(),
    )


def _target_size(ctx):
    if ctx.dataset is None:
        return 0
    return ctx.target_view().count()


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
    return _target_size(ctx) > DELEGATION_THRESHOLD[operator_name]


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


def add_target_view_input(inputs, ctx, action):
    """Adds the dataset / current view / selected samples choice."""
    inputs.view_target(ctx, action_description=action)


def call_operator(operator, sample_collection, params, delegate=False):
    """Runs ``operator`` on a collection from Python, the way the App does.

    This is what the operators' ``__call__`` methods use, so that
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


def vector_fields(ctx):
    """The names of the dataset's vector fields, for field choices."""
    import fiftyone.core.fields as fof

    schema = ctx.dataset.get_field_schema(flat=True)
    return sorted(
        name
        for name, f in schema.items()
        if isinstance(f, (fof.VectorField, fof.ArrayField))
    )
