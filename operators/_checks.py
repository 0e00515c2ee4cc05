"""Checks that forms run before anything is run or queued, each shown
inline under the input it concerns: secrets among the parameters, the
embeddings field (exists, holds one-dimensional vectors, in every sample of
the view), and clustering parameters against each other and the view."""

import re
import urllib.parse

import numpy as np

import fiftyone.core.fields as fof
import fiftyone.operators.types as types

from .. import api
from ..core.methods import METHODS
from ..data import vector_field_db_name

SECRET = "OPENAI_API_KEY"

# Parameter names that hold a secret (api_key, openai_api_key, password...)
_SECRET_NAME = re.compile(r"(^|_)(api_?key|secret|password)$", re.I)

# Query parameters of a URL that hold a secret
_SECRET_QUERY = re.compile(r"^(api_?key|key|token|access_token|secret)$", re.I)

# How many vectors a form reads to check a field
_PEEK = 5


def mark_invalid(inputs, key, message):
    """Marks the input ``key`` of ``inputs`` invalid, with ``message``
    shown under it."""
    prop = inputs.get_property(key)
    prop.invalid = True
    prop.error_message = message


def add_error(inputs, key, label, message):
    """Shows ``message`` as an error in the form, and makes the form
    invalid (the App's Execute button stays disabled)."""
    inputs.view(key, types.Error(label=label, description=message))
    mark_invalid(inputs, key, message)


# ----------------------------------------------------------------------
# Secrets
# ----------------------------------------------------------------------


def url_has_credentials(url):
    """Whether ``url`` carries a user name, a password or a key."""
    if not isinstance(url, str) or not url:
        return False
    parts = urllib.parse.urlsplit(url.strip())
    if parts.username or parts.password:
        return True
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    return any(_SECRET_QUERY.match(name) for name, _ in query)


def refuse_secrets(inputs, ctx):
    """Marks invalid every parameter that carries a secret: one named like
    a key or password, or a ``base_url`` with credentials in it.

    Parameters are stored in plain text with a delegated operation (and
    logged by HTTP clients), so keys never travel as parameters; the key
    is the plugin secret :data:`SECRET`. As the check runs in the form,
    nothing is run or queued with such a parameter.
    """
    refused = []
    for key, value in (ctx.params or {}).items():
        if _SECRET_NAME.search(key) and value not in (None, ""):
            message = (
                f"Do not pass '{key}' as a parameter: parameters are stored "
                "in plain text with delegated operations. Set the plugin "
                f"secret {SECRET} (or the environment variable of that name "
                "where FiftyOne and `fiftyone delegated launch` run)"
            )
        elif key == "base_url" and url_has_credentials(value):
            message = (
                "This URL carries credentials, which would be stored with "
                "the operation and logged: give the server's URL without "
                f"them and the key as the plugin secret {SECRET}"
            )
        else:
            continue
        if key not in inputs.properties:
            inputs.str(key, label=key)
            refused.append(key)
        mark_invalid(inputs, key, message)
    # parameters the form does not have go first: the error a refused
    # request reports is the first one
    props = inputs.properties
    inputs.properties = dict(
        [(k, props[k]) for k in refused]
        + [(k, p) for k, p in props.items() if k not in refused]
    )


# ----------------------------------------------------------------------
# Embeddings fields
# ----------------------------------------------------------------------


def vector_field_choices(dataset):
    """The dataset's top-level vector fields that hold one-dimensional
    vectors (read from a few samples): the fields an embeddings input
    offers. Nested fields (``ground_truth.logits``), fields without any
    value and arrays of another shape are left out."""
    if dataset is None:
        return []
    schema = dataset.get_field_schema()
    names = [
        name
        for name, field in schema.items()
        if isinstance(field, (fof.VectorField, fof.ArrayField))
    ]
    out = []
    for name in sorted(names):
        try:
            _peek_vectors(dataset, name)
        except ValueError:
            continue
        out.append(name)
    return out


def _peek_vectors(samples, field):
    """Reads a few vectors of ``field``; returns their dimension, or raises
    a ``ValueError`` saying what they are instead."""
    values = samples.exists(field).limit(_PEEK).values(field)
    if not values:
        raise ValueError(f"No sample has a vector in '{field}'")
    dims = set()
    for value in values:
        try:
            v = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(
                f"'{field}' holds {type(value).__name__} values, not "
                "numeric vectors"
            ) from None
        if v.ndim != 1:
            raise ValueError(
                f"'{field}' holds arrays of shape {v.shape}, not "
                "one-dimensional vectors"
            )
        dims.add(len(v))
    if len(dims) > 1:
        sizes = " and ".join(str(d) for d in sorted(dims))
        raise ValueError(
            f"'{field}' holds vectors of different lengths ({sizes}): "
            "recompute the embeddings with one model"
        )
    return dims.pop()


def check_embeddings(samples, field, skip_missing=False):
    """Checks that ``field`` is a vector field of one-dimensional vectors
    that the samples of ``samples`` have (all of them, unless
    ``skip_missing``).

    Returns:
        the number of samples with a vector

    Raises:
        ValueError: saying what is wrong and what to do
    """
    vector_field_db_name(samples, field)  # exists, top-level, vectors
    api.check_no_pending_shards(samples, field)  # an InputError: a ValueError
    n = samples.count()
    have = samples.exists(field).count()
    if have == 0:
        raise ValueError(
            f"No sample in this view has a vector in '{field}': compute "
            "embeddings first, or choose another field"
        )
    if have < n and not skip_missing:
        raise ValueError(
            f"{n - have:,} of {n:,} samples have no vector in '{field}': "
            "tick 'Skip samples without embeddings' or compute them first"
        )
    _peek_vectors(samples, field)
    return have


# ----------------------------------------------------------------------
# Clustering parameters
# ----------------------------------------------------------------------


# The inputs that name what a run writes, whose value an error may quote
_NAMES_WRITTEN = ("cluster_field", "projection_brain_key", "run_key")


def _mark_mentioned(inputs, message, params):
    """Marks invalid the input whose key ``message`` mentions (the longest
    such key), or the input naming what the run writes whose value it
    quotes, or shows the message as an error of the whole form."""
    keys = sorted(inputs.properties, key=len, reverse=True)
    for key in keys:
        if re.search(rf"(?<![\w]){re.escape(key)}(?![\w])", message):
            mark_invalid(inputs, key, message)
            return
    for key in _NAMES_WRITTEN:
        value = params.get(key)
        if value and f"'{value}'" in message and key in inputs.properties:
            mark_invalid(inputs, key, message)
            return
    add_error(inputs, "plan_error", "Cannot run", message)


def check_plan(inputs, samples, params):
    """Validates a clustering request as the API will
    (:func:`api.plan_clustering`: the method's parameters against each
    other, the run key, the fields the run writes) and marks the input the
    error names invalid."""
    try:
        api.plan_clustering(samples, **params)
    except (ValueError, TypeError) as e:
        _mark_mentioned(inputs, str(e), params)
        return False
    return True


def check_against_samples(inputs, method, params, n):
    """Checks the method's parameters against the ``n`` samples to cluster
    (k, the bounds of an automatic k, minimum cluster sizes) and marks the
    inputs that do not fit invalid."""
    cls = METHODS.get(method)
    prefix = f"{method}__"
    p = METHODS.resolve(
        method, {k: v for k, v in params.items() if k.startswith(prefix)}
    )
    limits = []
    if cls.k_param and p.get(cls.k_param) is not None:
        limits.append((cls.k_param, "the number of clusters"))
    elif cls.k_param:
        if p["k_min"] > p["k_max"]:
            mark_invalid(
                inputs,
                f"{method}__k_min",
                f"k_min={p['k_min']} must not exceed k_max={p['k_max']}",
            )
        limits.append(("k_min", "the smallest k tried"))
    for name in ("min_cluster_size", "min_samples"):
        if cls.density_based and p.get(name) is not None:
            limits.append((name, f"{name} (more is all noise)"))
    for name, what in limits:
        key = f"{method}__{name}"
        if p[name] > n and key in inputs.properties:
            mark_invalid(
                inputs,
                key,
                f"{name}={p[name]} is larger than the {n:,} samples to "
                f"cluster: {what} must be at most {n:,}",
            )
    if cls.max_samples is not None and n > cls.max_samples:
        mark_invalid(
            inputs,
            "method",
            f"{cls.label} needs memory quadratic in the number of samples "
            f"and supports at most {cls.max_samples:,}; this view has "
            f"{n:,}",
        )
