"""Cluster naming on a real dataset: the API and the operator, against a
local chat-completions server."""

import importlib
import inspect
import json
import logging

import numpy as np
import pytest
from PIL import Image

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.executor import ExecutionContext

URI = "@curate/clustering/label_clusters"
KEY = "sk-test-key-5a4b3c2d1e"


import llm_server  # noqa: E402 (made importable by conftest)

LLMServer = llm_server.LLMServer
COLOURS = llm_server.COLOURS

SIZES = {"red": 16, "green": 12, "blue": 8}


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with LLMServer(api_key=KEY) as s:
        yield s


def _make_dataset(name, tmp_path, sizes=SIZES, outliers=0):
    """Samples whose images are plain colours and whose embeddings form
    one blob per colour (plus far-away outliers, coloured gray)."""
    rng = np.random.default_rng(0)
    samples, vectors, colours = [], [], []
    for c, (colour, n) in enumerate(sizes.items()):
        centre = np.zeros(8)
        centre[c] = 20.0
        for i in range(n):
            p = tmp_path / f"{colour}{i}.png"
            Image.new("RGB", (640, 400), COLOURS[colour]).save(p)
            samples.append(fo.Sample(filepath=str(p)))
            vectors.append(centre + rng.normal(size=8))
            colours.append(colour)
    for i in range(outliers):
        p = tmp_path / f"gray{i}.png"
        Image.new("RGB", (64, 64), COLOURS["gray"]).save(p)
        samples.append(fo.Sample(filepath=str(p)))
        vectors.append(rng.normal(size=8) * 3 - 40.0 * (i + 1))
        colours.append("gray")
    ds = fo.Dataset(name)
    ds.add_samples(samples)
    ds.set_values("embeddings", [np.asarray(v, np.float32) for v in vectors])
    ds.set_values("colour", colours)
    return ds


@pytest.fixture
def ds(api, dataset_name, tmp_path):
    ds = _make_dataset(dataset_name, tmp_path)
    api.compute_clusters(
        ds, "run1", "embeddings", method="kmeans", kmeans__n_clusters=3
    )
    return ds


def _colour_of_cluster(ds):
    out = {}
    for cid, colour in zip(*ds.values(["run1_cluster", "colour"])):
        out[cid] = colour
    return out


def _snapshot(api, ds):
    runs = importlib.import_module(api.__name__.rsplit(".", 1)[0] + ".runs")
    return (
        sorted(ds.get_field_schema()),
        json.dumps(runs.get_config(ds, "run1"), sort_keys=True),
        json.dumps(runs.load_results(ds, "run1"), sort_keys=True),
    )


def test_labels_every_cluster(api, ds, server, runs):
    clusters_before = ds.values("run1_cluster")
    summary = api.label_clusters(ds, "run1", base_url=server.url)

    assert summary["failed"] == {}
    assert summary["label_field"] == "run1_cluster_label"
    assert len(summary["labelled"]) == 3
    assert summary["requests"] == 3
    assert summary["estimate"]["images"] == 15
    assert server.violations == []
    assert [r["images"] for r in server.requests] == [5, 5, 5]
    assert all(max(s) <= 512 for r in server.requests for s in r["sizes"])

    # Every member carries its cluster's label; cluster ids are untouched
    assert ds.values("run1_cluster") == clusters_before
    schema = ds.get_field_schema()
    assert isinstance(schema["run1_cluster_label"], fo.StringField)
    for colour, label in zip(*ds.values(["colour", "run1_cluster_label"])):
        assert label == f"{colour.capitalize()} images"
    assert ds.count_values("run1_cluster_label") == {
        "Red images": 16,
        "Green images": 12,
        "Blue images": 8,
    }

    config = runs.get_config(ds, "run1")
    assert config["label_field"] == "run1_cluster_label"
    assert "run1_cluster_label" in config["fields"]

    info = api.get_clustering_run_info(ds, "run1")
    colour_of = _colour_of_cluster(ds)
    members = dict(zip(ds.values("id"), ds.values("run1_cluster")))
    for cid, c in info["statistics"]["clusters"].items():
        assert c["label"] == f"{colour_of[cid].capitalize()} images"
        assert c["description"].startswith("Pictures that are mostly")
        assert c["label_model"] == "gpt-4.1-mini"
        assert len(c["shown_ids"]) == 5
        assert all(members[i] == cid for i in c["shown_ids"])
        # The most typical members come first
        assert c["shown_ids"][:3] == c["representatives"][:3]

    # Deleting the run removes the label field with the others
    api.delete_clustering_run(ds, "run1")
    assert "run1_cluster_label" not in ds.get_field_schema()


def test_failed_cluster_is_reported_and_the_run_resumes(api, ds, server, runs):
    colour_of = _colour_of_cluster(ds)
    green = next(c for c, col in colour_of.items() if col == "green")
    server.inject("server_error", times=None, colour="green")

    summary = api.label_clusters(
        ds, "run1", base_url=server.url, max_retries=1, backoff_base=0.01
    )
    assert list(summary["failed"]) == [green]
    assert "HTTP 500" in summary["failed"][green]
    assert sorted(summary["labelled"]) == sorted(set(colour_of) - {green})
    counts = ds.count_values("run1_cluster_label")
    assert counts == {"Red images": 16, "Blue images": 8, None: 12}
    results = runs.load_results(ds, "run1")
    assert "label" not in results["clusters"][green]

    # Run again: only the cluster without a label is sent
    server.clear()
    summary = api.label_clusters(ds, "run1", base_url=server.url)
    assert list(summary["labelled"]) == [green]
    assert sorted(summary["already_labelled"]) == sorted(
        set(colour_of) - {green}
    )
    assert len(server.requests) == 1
    assert ds.count_values("run1_cluster_label")["Green images"] == 12

    # Everything has a label: nothing to send
    server.clear()
    summary = api.label_clusters(ds, "run1", base_url=server.url)
    assert summary["labelled"] == {} and server.requests == []

    # overwrite sends every cluster again and updates the owned field
    server.inject(
        "content",
        times=None,
        content='{"label": "Renamed", "description": "Again."}',
    )
    summary = api.label_clusters(
        ds, "run1", base_url=server.url, overwrite=True
    )
    assert len(summary["labelled"]) == 3 and len(server.requests) == 3
    assert ds.count_values("run1_cluster_label") == {"Renamed": 36}
    config = runs.get_config(ds, "run1")
    assert config["fields"].count("run1_cluster_label") == 1


def test_interrupted_run_keeps_finished_labels(api, ds, server, runs):
    def interrupt(fraction, label=None):
        if 0 < fraction < 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.label_clusters(
            ds,
            "run1",
            base_url=server.url,
            max_concurrency=1,
            progress=interrupt,
        )
    results = runs.load_results(ds, "run1")
    labelled = [c for c, v in results["clusters"].items() if v.get("label")]
    assert len(labelled) == 1
    assert (
        ds.match(
            fo.ViewField("run1_cluster_label") != None  # noqa: E711
        ).distinct("run1_cluster")
        == labelled
    )

    server.clear()
    summary = api.label_clusters(ds, "run1", base_url=server.url)
    assert summary["already_labelled"] == labelled
    assert len(summary["labelled"]) == 2
    assert None not in ds.count_values("run1_cluster_label")


def test_largest_clusters_only_and_random_selection(api, ds, server, runs):
    summary = api.label_clusters(
        ds,
        "run1",
        base_url=server.url,
        max_clusters=1,
        selection="random",
        seed=7,
        images_per_cluster=3,
    )
    assert [v["label"] for v in summary["labelled"].values()] == ["Red images"]
    assert ds.count_values("run1_cluster_label") == {
        "Red images": 16,
        None: 20,
    }
    (cid,) = summary["labelled"]
    shown = runs.load_results(ds, "run1")["clusters"][cid]["shown_ids"]
    assert len(shown) == 3
    api.label_clusters(
        ds,
        "run1",
        base_url=server.url,
        cluster_ids=[cid],
        selection="random",
        seed=7,
        images_per_cluster=3,
        overwrite=True,
    )
    again = runs.load_results(ds, "run1")["clusters"][cid]["shown_ids"]
    assert again == shown


def test_noise_is_not_labelled(api, dataset_name, tmp_path, server):
    ds = _make_dataset(dataset_name, tmp_path, outliers=3)
    api.compute_clusters(
        ds,
        "run1",
        "embeddings",
        method="hdbscan",
        reduce="none",
        hdbscan__min_cluster_size=5,
    )
    assert "-1" in ds.distinct("run1_cluster")
    summary = api.label_clusters(ds, "run1", base_url=server.url)
    assert "-1" not in summary["labelled"] and summary["failed"] == {}
    assert all(r["colour"] != "gray" for r in server.requests)
    noise = ds.match(fo.ViewField("run1_cluster") == "-1")
    assert noise.distinct("run1_cluster_label") == []
    with pytest.raises(api.InputError, match="noise"):
        api.label_clusters(ds, "run1", base_url=server.url, cluster_ids=["-1"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images_per_cluster=0), "images_per_cluster"),
        (dict(images_per_cluster=2.5), "images_per_cluster"),
        (dict(selection="best"), "selection"),
        (dict(max_concurrency=0), "max_concurrency"),
        (dict(max_clusters=0), "max_clusters"),
        (dict(detail="ultra"), "detail"),
        (dict(timeout=0), "timeout"),
        (dict(seed=-1), "seed"),
        (dict(max_retries=-1), "max_retries"),
        (dict(backoff_base="1"), "backoff_base"),
        (dict(base_url="localhost:8000"), "base_url"),
        (dict(cluster_ids=["7"]), "no cluster 7"),
        (dict(label_field="run1_cluster"), "other data"),
        (dict(label_field="run1_distance"), "other data"),
        (dict(label_field="colour"), "already exists"),
        (dict(label_field="bad name"), "not valid"),
        (dict(run_key="nope"), "no clustering run 'nope'"),
    ],
)
def test_bad_input_fails_before_any_request(api, ds, server, kwargs, match):
    before = _snapshot(api, ds)
    colours = ds.values("colour")
    kwargs = dict(dict(run_key="run1", base_url=server.url), **kwargs)
    with pytest.raises(api.InputError, match=match):
        api.label_clusters(ds, **kwargs)
    assert server.requests == []
    assert _snapshot(api, ds) == before
    assert ds.values("colour") == colours


def test_missing_key_fails_before_any_request(api, ds, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    before = _snapshot(api, ds)
    with pytest.raises(api.InputError, match="OPENAI_API_KEY"):
        api.label_clusters(ds, "run1", base_url=server.url)
    assert server.requests == []
    assert _snapshot(api, ds) == before


def test_key_never_leaks(api, ds, monkeypatch, caplog):
    secret = "sk-proj-LEAKCHECK-0f1e2d3c4b5a"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    before = _snapshot(api, ds)
    with LLMServer(api_key="the-right-key") as server:
        with pytest.raises(Exception) as e:
            api.label_clusters(ds, "run1", base_url=server.url)
        assert 1 <= len(server.requests) <= 8
    assert "OPENAI_API_KEY" in str(e.value)
    assert _snapshot(api, ds) == before

    # A working run with a key that differs from the server's at first
    with LLMServer(api_key=secret) as server:
        server.inject("unauthorized", times=1)
        server.inject("server_error", times=2)
        with pytest.raises(Exception) as e2:
            api.label_clusters(
                ds,
                "run1",
                base_url=server.url,
                max_concurrency=1,
                backoff_base=0.01,
            )
        summary = api.label_clusters(
            ds, "run1", base_url=server.url, backoff_base=0.01
        )
    assert len(summary["labelled"]) == 3

    stored = json.dumps(api.get_clustering_run_info(ds, "run1"))
    for text in (
        str(e.value),
        str(e2.value),
        caplog.text,
        stored,
        json.dumps(summary),
    ):
        assert secret not in text
        assert secret[8:] not in text


def test_operator_from_python(api, ds, server):
    op = foo.get_operator(URI)
    result = op(ds, "run1", base_url=server.url, images_per_cluster=2)
    summary = result.result
    assert len(summary["labelled"]) == 3
    assert [r["images"] for r in server.requests] == [2, 2, 2]
    ds.reload()
    assert None not in ds.count_values("run1_cluster_label")


def test_operator_needs_confirmation(api, ds, server):
    with pytest.raises(Exception, match="confirm_send.*Tick to confirm"):
        foo.execute_operator(
            URI,
            dict(dataset=ds),
            params=dict(run_key="run1", base_url=server.url),
        )
    assert server.requests == []


def test_operator_delegated_does_not_store_the_key(
    api, ds, server, dataset_name
):
    from fiftyone.operators.delegated import DelegatedOperationService

    op = foo.get_operator(URI)
    op(ds, "run1", base_url=server.url, delegate=True)
    assert server.requests == []
    svc = DelegatedOperationService()
    (queued,) = svc.list_operations(dataset_name=dataset_name)
    assert KEY not in json.dumps(queued.__dict__, default=str)
    svc.execute_queued_operations(dataset_name=dataset_name, limit=1)
    ds.reload()
    assert len(server.requests) == 3
    assert None not in ds.count_values("run1_cluster_label")
    (done,) = svc.list_operations(dataset_name=dataset_name)
    assert KEY not in json.dumps(done.__dict__, default=str)


def test_form_shows_the_cost_and_requires_consent(api, ds, server):
    from fiftyone.operators.executor import ExecutionContext

    op = foo.get_operator(URI)

    def form(**params):
        ctx = ExecutionContext(
            request_params=dict(
                dataset_name=ds.name,
                params=dict(dict(run_key="run1"), **params),
            ),
            operator_uri=URI,
            required_secrets=["OPENAI_API_KEY"],
        )
        return op.resolve_input(ctx).to_json()["type"]["properties"]

    props = form(base_url=server.url)
    info = props["run_info"]["view"]
    assert info["label"] == "3 requests, 15 images, about " + (
        f"{api.estimate_label_clusters(ds, 'run1')['total_tokens']:,} tokens"
    )
    assert server.url in info["description"]
    assert props["confirm_send"]["invalid"] is True
    assert "missing_key" not in props

    props = form(base_url=server.url, confirm_send=True, max_clusters=1)
    assert not props["confirm_send"].get("invalid")
    assert props["run_info"]["view"]["label"].startswith("1 request, 5 images")

    props = form(label_field="colour")
    assert "already exists" in props["plan"]["view"]["description"]
    assert server.requests == []


def test_form_without_key(api, ds, monkeypatch):
    from fiftyone.operators.executor import ExecutionContext

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ctx = ExecutionContext(
        request_params=dict(dataset_name=ds.name, params={}),
        operator_uri=URI,
        required_secrets=["OPENAI_API_KEY"],
    )
    props = (
        foo.get_operator(URI)
        .resolve_input(ctx)
        .to_json()["type"]["properties"]
    )
    assert "OPENAI_API_KEY" in props["missing_key"]["view"]["label"]


def _options(api):
    """The plugin's ``core.labeling.OPTIONS``."""
    package = api.__name__.rsplit(".", 1)[0]
    return importlib.import_module(package + ".core.labeling").OPTIONS


def test_every_option_is_checked_by_the_api_with_its_name(api, ds, server):
    before = _snapshot(api, ds)
    for p in _options(api).params:
        bad = "not-a-choice" if p.choices else ["a list"]
        kwargs = {"base_url": server.url, p.name: bad}
        with pytest.raises(api.InputError, match=f"'{p.name}'"):
            api.label_clusters(ds, "run1", **kwargs)
    assert server.requests == []
    assert _snapshot(api, ds) == before


def test_api_and_operator_defaults_are_the_schemas(api):
    options = _options(api)
    call = inspect.signature(api.label_clusters).parameters
    assert set(options.names()) <= set(call)
    operator = inspect.signature(type(foo.get_operator(URI)).__call__)
    for fn_params in (call, operator.parameters):
        for p in options.params:
            if p.name in fn_params:
                assert fn_params[p.name].default == p.default, p.name


def _form_props(ds, params):
    request = dict(dataset_name=ds.name, params=dict(run_key="run1", **params))
    ctx = ExecutionContext(
        request_params=request,
        operator_uri=URI,
        required_secrets=["OPENAI_API_KEY"],
    )
    form = foo.get_operator(URI).resolve_input(ctx)
    return form.to_json()["type"]["properties"]


def test_form_options_come_from_the_schema(api, ds, server):
    options = _options(api)
    props = _form_props(ds, dict(base_url=server.url))
    shown = [k for k in props if k in options.names()]
    assert (
        shown
        == (
            "model base_url images_per_cluster selection context max_clusters "
            "overwrite label_field detail max_concurrency timeout"
        ).split()
    )
    assert not any(props[k].get("invalid") for k in shown)
    assert props["images_per_cluster"]["type"]["max"] == 20
    assert props["max_concurrency"]["type"]["max"] == 64
    assert props["base_url"]["view"]["label"] == "Server URL"
    choices = props["selection"]["view"]["choices"]
    assert [c["label"] for c in choices] == ["Representative", "Random"]

    # Out-of-bounds values are marked inline with the schema's message
    bad = dict(images_per_cluster=50, timeout=0, selection="random", seed=-1)
    props = _form_props(ds, dict(bad, base_url="localhost:8000"))
    shown = [k for k in props if k in options.names()]
    assert shown[4] == "seed"
    for key, rule in [
        ("images_per_cluster", "<= 20"),
        ("timeout", "> 0"),
        ("seed", ">= 0"),
        ("base_url", "http(s) URL"),
    ]:
        assert props[key]["invalid"] is True, key
        message = props[key]["error_message"]
        assert f"'{key}'" in message and rule in message, message
    assert server.requests == []
