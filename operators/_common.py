"""Pieces shared by the operators: forms generated from parameter schemas,
delegation, progress, target views, and the ends of ``execute`` and
``__call__``."""

import logging

import fiftyone.operators as foo
import fiftyone.operators.types as types

from .. import api
from ._checks import mark_invalid, refuse_secrets, vector_field_choices
from ._execution import from_app

logger = logging.getLogger(__name__)

# Keys the App adds to an operator's params that are not the operator's own
# (a form opened from a panel carries the panel's id and state)
APP_KEYS = ("view_target", "delegate", "panel_id", "panel_state")

# The App form's default: delegated above this much work (samples of the
# target view; for label_clusters, clusters to name), else run now. Calls
# from Python run now unless they ask for delegation
DELEGATION_THRESHOLD = {
    "compute_embeddings": 1000,
    "compute_clusters": 20000,
    "compute_projection": 20000,
    "label_clusters": 200,
    "audit_labels": 20000,
    "compute_outliers": 20000,
    "assign_clusters": 20000,
    "find_duplicates": 50000,
    "select_subset": 100000,
}

# The icon of the operators that compute
ICON = "/assets/icon.svg"


# ----------------------------------------------------------------------
# Form inputs
# ----------------------------------------------------------------------


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
    """The dataset's fields of one-dimensional vectors, for field choices
    (see :func:`._checks.vector_field_choices`)."""
    return vector_field_choices(ctx.dataset)


# ----------------------------------------------------------------------
# Configs and delegation
# ----------------------------------------------------------------------


def light_config(name, label, description=None):
    """An :class:`OperatorConfig` for an operator that runs at once."""
    return foo.OperatorConfig(
        name=name, label=label, description=description, dynamic=True
    )


def heavy_config(name, label, description, **kwargs):
    """An :class:`OperatorConfig` for an operator that may be delegated and
    that, run from the App, streams its progress (see
    :func:`._execution.run_api`)."""
    return foo.OperatorConfig(
        name=name,
        label=label,
        description=description,
        dynamic=True,
        execute_as_generator=True,
        allow_immediate_execution=True,
        allow_delegated_execution=True,
        default_choice_to_delegated=False,
        **kwargs,
    )


def delegates_by_default(ctx, operator):
    """Whether the App form offers to delegate by default: whether the
    operator's work (:meth:`HeavyOperator.work_size`) is larger than its
    :data:`DELEGATION_THRESHOLD`."""
    if ctx.dataset is None:
        return False
    size, _ = operator.work_size(ctx)
    return size > DELEGATION_THRESHOLD[operator.name]


def add_delegation_input(inputs, ctx, operator):
    """Adds the 'delegate' checkbox, ticked by default for large work (see
    :func:`delegates_by_default`), saying what delegation needs."""
    threshold = DELEGATION_THRESHOLD[operator.name]
    _, unit = operator.work_size(ctx) if ctx.dataset is not None else (0, "")
    inputs.bool(
        "delegate",
        default=delegates_by_default(ctx, operator),
        label="Delegate execution (run in the background)",
        description=(
            "Queues the run for a worker: it runs only where `fiftyone "
            "delegated launch` runs, started with the same database and "
            "plugins directory; `fiftyone delegated list` shows the queue. "
            f"Ticked by default above {threshold:,} {unit}; unticked, it "
            "runs now and shows its progress here"
        ),
        view=types.CheckboxView(),
    )


def resolve_delegation(ctx, operator):
    """Whether to run delegated.

    Yes when delegation was requested (the App's *Schedule* button, or
    ``request_delegation=True`` / ``delegate=True`` from Python); otherwise
    the form's ``delegate`` choice; otherwise, for a request from the App,
    the size-based default of the form (:func:`delegates_by_default`), and
    for a call from Python (``foo.execute_operator`` without ``delegate``)
    no: it runs now.

    The answer is always ``True`` or ``False``, never ``None``: FiftyOne
    then offers the App's one matching button (*Execute* or *Schedule*), so
    the form's checkbox is the only delegation choice the user sees.
    """
    if ctx.requesting_delegated_execution:
        return True
    delegate = ctx.params.get("delegate", None)
    if delegate is not None:
        return bool(delegate)
    return from_app(ctx) and delegates_by_default(ctx, operator)


class PluginOperator(foo.Operator):
    """An operator of this plugin: its form (:meth:`form`) always refuses
    parameters that carry secrets (see :func:`._checks.refuse_secrets`),
    before anything is run or queued."""

    def resolve_input(self, ctx):
        prop = self.form(ctx)
        refuse_secrets(prop.type, ctx)
        return prop

    def form(self, ctx):
        """The operator's form, a :class:`types.Property`."""
        return types.Property(types.Object())


class HeavyOperator(PluginOperator):
    """An operator that may run delegated.

    A subclass declares ``CONFIG = (name, label, description)``; its config
    (:func:`heavy_config`), its ``resolve_delegation`` and the end of its
    form (:meth:`finish_form`) follow from it.
    """

    CONFIG = None

    @property
    def config(self):
        return heavy_config(*self.CONFIG, icon=ICON)

    def work_size(self, ctx):
        """How much work a run is, and in what unit: the number of samples
        of the target view."""
        return ctx.target_view().count(), "samples"

    def resolve_delegation(self, ctx):
        return resolve_delegation(ctx, self)

    def finish_form(self, inputs, ctx):
        """Ends the form: adds the 'delegate' checkbox and returns the
        form, titled with the operator's label."""
        add_delegation_input(inputs, ctx, self)
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
