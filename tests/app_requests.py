"""Operator requests made as the App's server receives them: the same
request keys the App sends (sidebar filters, extended selection, selection
style), through FiftyOne's own entry points (``resolve_type`` for forms
and results, ``execute_or_delegate_operator`` for runs, whose generator
the App's ``/operators/execute/generator`` route streams).

Imports fiftyone: loaded by ``tests/integration/conftest.py`` once the
test database is up."""

import asyncio
import json

from fiftyone.operators.executor import (
    execute_or_delegate_operator,
    resolve_type,
)
from fiftyone.operators.registry import OperatorRegistry

PLUGIN = "@curate/clustering"


def uri(name):
    return f"{PLUGIN}/{name}"


def app_request(ds, params, view=None, **extra):
    """The request the App sends for an operator (see ``RD``/``ZD`` in the
    App's operator client): its context keys, whatever the form holds."""
    stages = view._serialize() if view is not None else []
    request = dict(
        dataset_name=ds.name,
        view=stages,
        params=dict(params),
        filters={},
        extended=None,
        extended_selection=None,
        selected=[],
        selected_samples=[],
        sample_selection_style={},
        selected_labels=[],
        current_sample=None,
        view_name=None,
        active_fields=[],
    )
    request.update(extra)
    return request


def form(name, request):
    """The form's properties, as JSON, as the App resolves them."""
    prop = asyncio.run(
        resolve_type(
            OperatorRegistry(), uri(name), dict(request, target="inputs")
        )
    )
    return prop.to_json()["type"]["properties"]


def run_in_app(name, request):
    """Runs an operator as the App's generator route does; returns the
    JSON messages the App receives."""
    execution = asyncio.run(execute_or_delegate_operator(uri(name), request))
    assert execution.error is None, execution.error
    assert execution.is_generator, "an immediate App run must stream"
    return [json.loads(m.to_json_line()) for m in execution.result]


def triggers(messages, operator):
    """The parameters of each call of ``operator`` the run asked the App
    to make."""
    return [
        m["body"]["params"]
        for m in messages
        if m["cls"] == "InvocationRequest"
        and m["body"]["operator_uri"] == operator
    ]


def shown(messages):
    """The result the App shows when the run ends, in the dialog where the
    progress was (``show_output``): its Markdown report."""
    (out,) = triggers(messages, "show_output")
    return out["outputs"]["type"]["properties"]["report"]["default"]
