"""Parameter schemas and registries.

Every configurable component of the plugin (clustering methods, embedders,
projection methods) is a class in a :class:`Registry` that declares its
parameters as :class:`Param` objects; a fixed set of options (those of
cluster labelling) is a :class:`ParamSet`. The App forms, validation, the
stored run configs and the README tables are all generated from these
schemas, so adding a component or an option touches one file.

Parameters travel flat, as ``<component>__<param>`` keys (for example
``kmeans__n_clusters``), which is how they appear in App forms and in the
Python API alike.
"""

import dataclasses
import math
from typing import Any, Callable, Optional

SEP = "__"


class ParamError(ValueError):
    """A parameter is unknown, of the wrong type, or out of bounds."""


@dataclasses.dataclass(frozen=True)
class Check:
    """A constraint on a parameter's value that bounds and choices cannot
    express (an open bound, a URL's scheme, a non-blank string).

    Args:
        rule: what the value must be, in words that follow "must be" in an
            error message and stand alone in the docs (e.g. ``"> 0"``)
        test: a callable ``test(value) -> bool`` on the coerced value
    """

    rule: str
    test: Callable[[Any], bool]


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of a registered component, or one option of a
    :class:`ParamSet`.

    Args:
        name: the parameter's name
        type: one of ``int``, ``float``, ``str``, ``bool``
        default: the default value (``None`` only when ``optional``)
        help: one sentence shown in the App form and the docs
        min: inclusive lower bound, for numbers
        max: inclusive upper bound, for numbers
        choices: the allowed values, for strings
        optional: whether ``None`` is allowed (it then means "automatic" or
            "not set", as ``help`` explains)
        check: a :class:`Check` for what the bounds cannot say, or
            ``None``
    """

    name: str
    type: type
    default: Any
    help: str
    min: Optional[float] = None
    max: Optional[float] = None
    choices: Optional[tuple] = None
    optional: bool = False
    check: Optional[Check] = None

    def validate(self, value, owner=""):
        """Returns ``value`` coerced to this parameter's type.

        Raises:
            ParamError: if the value is of the wrong type or out of bounds
        """
        where = f"{owner}{SEP}{self.name}" if owner else self.name
        if value is None or value == "":
            if self.optional:
                return None
            raise ParamError(f"Parameter '{where}' is required")

        value = self._coerce(value, where)

        if self.choices is not None and value not in self.choices:
            choices = ", ".join(repr(c) for c in self.choices)
            raise ParamError(
                f"Parameter '{where}' must be one of {choices}; "
                f"got {value!r}"
            )
        if self.min is not None and value < self.min:
            raise ParamError(
                f"Parameter '{where}' must be >= {self.min}; got {value}"
            )
        if self.max is not None and value > self.max:
            raise ParamError(
                f"Parameter '{where}' must be <= {self.max}; got {value}"
            )
        if self.check is not None and not self.check.test(value):
            raise ParamError(
                f"Parameter '{where}' must be {self.check.rule}; "
                f"got {value!r}"
            )
        return value

    def _coerce(self, value, where):
        bad = ParamError(
            f"Parameter '{where}' must be of type {self.type.__name__}; "
            f"got {value!r}"
        )
        if self.type is bool:
            if isinstance(value, bool):
                return value
            raise bad
        if self.type is int:
            if isinstance(value, bool):
                raise bad
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, int):
                return int(value)
            raise bad
        if self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad
            value = float(value)
            if not math.isfinite(value):
                raise bad
            return value
        if self.type is str:
            if isinstance(value, str):
                return value
            raise bad
        raise TypeError(f"Unsupported parameter type {self.type}")

    def describe(self):
        """A short human description of the allowed values."""
        parts = []
        if self.choices is not None:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        if self.check is not None:
            parts.append(self.check.rule)
        if self.min is not None:
            parts.append(f">= {_number(self.min)}")
        if self.max is not None:
            parts.append(f"<= {_number(self.max)}")
        return "; ".join(parts)

    def markdown_cells(self, unset="auto"):
        """The type, default, allowed values and help of this parameter, as
        Markdown table cells; ``unset`` stands for a ``None`` default."""
        default = unset if self.default is None else repr(self.default)
        return (
            f"{self.type.__name__} | {default} | {self.describe()} | "
            f"{self.help}"
        )


def _number(x):
    """A bound as people write it: ints in full, floats short."""
    return str(x) if isinstance(x, int) else f"{x:g}"


class ParamSet:
    """A fixed set of parameters: the options of one operation, or the
    parameters of one component of a :class:`Registry`.

    Args:
        kind: what the parameters configure, for error messages (e.g.
            ``"cluster labelling"``)
        params: a tuple of :class:`Param`
        owner (""): the prefix of the names in error messages (a
            component's name), or ``""`` for plain names
    """

    def __init__(self, kind, params, owner=""):
        self.kind = kind
        self.params = tuple(params)
        self.owner = owner

    def names(self):
        """The parameters' names, in order."""
        return [p.name for p in self.params]

    def validate(self, values):
        """Validates values of these parameters.

        Args:
            values: a dict ``param name -> value``; missing parameters get
                their defaults

        Returns:
            a dict ``param name -> validated value`` with every parameter

        Raises:
            ParamError: on an unknown parameter or a bad value, naming it
        """
        values = values or {}
        names = self.names()
        for key in values:
            if key not in names:
                valid = ", ".join(names) or "(none)"
                raise ParamError(
                    f"Unknown parameter {key!r} for {self.kind}. "
                    f"Valid parameters: {valid}"
                )
        return {
            p.name: p.validate(values.get(p.name, p.default), self.owner)
            for p in self.params
        }

    def markdown_table(self):
        """A Markdown table of the parameters."""
        rows = [
            "| parameter | type | default | allowed | help |",
            "|---|---|---|---|---|",
        ]
        for p in self.params:
            rows.append(f"| `{p.name}` | {p.markdown_cells('None')} |")
        return "\n".join(rows)


class Registry:
    """A name -> class registry of components with parameter schemas.

    Registered classes must define ``name`` (str), ``label`` (str),
    ``description`` (str) and ``params`` (a tuple of :class:`Param`).

    Args:
        kind: what the components are, for error messages
            (e.g. "clustering method")
    """

    def __init__(self, kind):
        self.kind = kind
        self._classes = {}

    def register(self, cls):
        """Class decorator that adds ``cls`` to the registry."""
        if cls.name in self._classes:
            raise ValueError(f"Duplicate {self.kind} '{cls.name}'")
        self._classes[cls.name] = cls
        return cls

    def names(self):
        """The registered names, in registration order."""
        return list(self._classes)

    def classes(self):
        """The registered classes, in registration order."""
        return list(self._classes.values())

    def get(self, name):
        """Returns the class registered as ``name``.

        Raises:
            ParamError: listing the valid names, if there is none
        """
        try:
            return self._classes[name]
        except KeyError:
            valid = ", ".join(self._classes)
            raise ParamError(
                f"Unknown {self.kind} {name!r}. Choose one of: {valid}"
            ) from None

    def resolve(self, name, params):
        """Validates the parameters of component ``name``.

        Args:
            name: a registered name
            params: a dict of parameters, keyed either ``<name>__<param>``
                or plain ``<param>``; keys prefixed with *another*
                component's name are ignored, so a whole App form can be
                passed as is. Missing parameters get their defaults.

        Returns:
            a dict ``param name -> validated value`` with every parameter

        Raises:
            ParamError: on an unknown component or parameter, or a bad value
        """
        schema = self.param_set(name)
        given = {}
        prefix = name + SEP
        for key, value in (params or {}).items():
            if key.startswith(prefix):
                key = key[len(prefix) :]
            elif SEP in key:
                other = key.split(SEP, 1)[0]
                if other in self._classes:
                    continue
            given[key] = value
        return schema.validate(given)

    def param_set(self, name):
        """The parameters of component ``name``, as a :class:`ParamSet`.

        Raises:
            ParamError: listing the valid names, if there is none
        """
        cls = self.get(name)
        return ParamSet(f"{self.kind} '{name}'", cls.params, owner=name)

    def markdown_table(self):
        """A Markdown table of the components and their parameters."""
        rows = [
            f"| {self.kind} | parameter | type | default | allowed | help |",
            "|---|---|---|---|---|---|",
        ]
        for cls in self.classes():
            first = True
            for p in cls.params:
                head = f"`{cls.name}`" if first else ""
                rows.append(
                    f"| {head} | `{cls.name}{SEP}{p.name}` | "
                    f"{p.markdown_cells()} |"
                )
                first = False
            if first:
                rows.append(f"| `{cls.name}` | | | | | {cls.description} |")
        return "\n".join(rows)


def split_params(params, *chosen):
    """Splits flat ``<component>__<param>`` keys among chosen components.

    Args:
        params: a dict of flat parameters, e.g. the whole of an App form
        *chosen: ``(registry, name)`` pairs, one per component in use (a
            ``name`` of ``None`` means that registry is not in use)

    Returns:
        one dict per pair, of that component's parameters with the prefix
        removed. Keys of other components of the same registries are dropped
        (a form carries the parameters of every choice).

    Raises:
        ParamError: for a key that belongs to no registry
    """
    out = [{} for _ in chosen]
    for key, value in params.items():
        prefix, sep, rest = key.partition(SEP)
        known = False
        for i, (registry, name) in enumerate(chosen):
            if sep and prefix == name:
                out[i][rest] = value
                known = True
                break
            if sep and prefix in registry.names():
                known = True
        if not known:
            valid = ", ".join(
                f"{name}{SEP}<param>" for _, name in chosen if name
            )
            raise ParamError(
                f"Unknown parameter {key!r}. Parameters are named "
                f"<component>{SEP}<param>, here: {valid}"
            )
    return out
