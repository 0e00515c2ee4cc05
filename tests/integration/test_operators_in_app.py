"""The operators as the App runs them (issue 17: a new user's first hour;
issue 18: keys never travel as parameters).

Requests are made as the App's server receives them (see
``tests/app_requests.py``).
"""

import asyncio
import re

import numpy as np
import pytest
from PIL import Image

import fiftyone as fo
from fiftyone import ViewField as F
import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import (
    ExecutionError,
    resolve_execution_options,
    resolve_type,
)
from fiftyone.operators.registry import OperatorRegistry

import llm_server  # noqa: E402 (made importable by tests/conftest.py)
from app_requests import (
    app_request,
    form,
    run_in_app,
    shown,
    triggers,
    uri,
)

KEY = "sk-test-key-0a1b2c3d4e"


def result_of(messages):
    (result,) = [m["body"] for m in messages if m["cls"] == "ExecutionResult"]
    return result


def delegates(name, request):
    opts = asyncio.run(
        resolve_execution_options(OperatorRegistry(), uri(name), request)
    )
    return opts.allow_delegated_execution and not (
        opts.allow_immediate_execution
    )


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


@pytest.fixture
def ds(dataset_name, plugin, tmp_path):
    """90 samples, small PNGs of three colours, whose 'emb' vectors form
    one blob per colour; plus a nested vector field, an empty one and one
    of matrices, which no embeddings choice may offer."""
    rng = np.random.default_rng(0)
    samples, X = [], []
    for c, colour in enumerate(("red", "green", "blue")):
        for i in range(30):
            p = tmp_path / f"{colour}{i}.png"
            Image.new("RGB", (32, 32), llm_server.COLOURS[colour]).save(p)
            samples.append(
                fo.Sample(
                    filepath=str(p),
                    ground_truth=fo.Classification(
                        label=colour, logits=rng.normal(size=3)
                    ),
                )
            )
            centre = np.zeros(8)
            centre[c] = 10.0
            X.append((centre + rng.normal(size=8)).astype(np.float32))
    dataset = fo.Dataset(dataset_name)
    dataset.add_samples(samples)
    dataset.set_values("emb", X)
    dataset.add_sample_field("unused", fo.VectorField)
    dataset.set_values("matrix", [np.ones((2, 2))] * len(dataset))
    dataset.persistent = True
    return dataset


def clusters_params(**kw):
    params = dict(
        run_key="r",
        model="existing",
        embeddings_field="emb",
        method="kmeans",
        kmeans__n_clusters=3,
        delegate=False,
    )
    params.update(kw)
    return params


# --------------------------------------------------------------------------
# 1. Every action tells the user what happened; 2. progress in the App
# --------------------------------------------------------------------------


def test_compute_clusters_in_the_app_streams_progress_reloads_and_reports(
    ds,
):
    request = app_request(ds, clusters_params())
    messages = run_in_app("compute_clusters", request)

    progress = triggers(messages, "set_progress")
    assert len(progress) >= 3, messages
    for p in progress:
        assert 0 <= p["progress"] <= 1
        assert re.match(r"^\d{1,3}%", p["label"]), p
    stages = {p["label"].split(": ", 1)[-1] for p in progress}
    assert {"reading", "clustering"} <= stages, stages
    # the sidebar shows the new fields: the dataset is reloaded
    assert triggers(messages, "reload_dataset")
    result = result_of(messages)
    assert result["n_clusters"] == 3
    ds.reload()
    assert ds.has_field("r_cluster")

    text = shown(messages)
    for words in (
        "3 clusters",
        "90 samples",
        "Fields written",
        "`r_cluster`",
        "`r_distance`",
        "Time taken",
        "Davies",
    ):
        assert words in text, (words, text)
    assert "noise" not in text  # k-means has none

    # a method with noise says how much
    request = app_request(
        ds,
        clusters_params(
            run_key="h", method="hdbscan", reduce="none", normalize=False
        ),
    )
    text = shown(run_in_app("compute_clusters", request))
    assert "noise" in text and "`h_strength`" in text, text


def test_every_writer_reloads_and_reports(ds, monkeypatch):
    """compute_embeddings, compute_projection, label_clusters."""
    request = app_request(
        ds,
        dict(
            model="pixels",
            embeddings_field="px",
            pixels__size=4,
            delegate=False,
        ),
    )
    messages = run_in_app("compute_embeddings", request)
    assert triggers(messages, "reload_dataset")
    text = shown(messages)
    assert "90 samples embedded" in text and "`px`" in text, text
    assert "Time taken" in text

    foo.get_operator(uri("compute_clusters"))(
        ds, "k3", "emb", method="kmeans", kmeans__n_clusters=3
    )
    request = app_request(
        ds,
        dict(source="run", run_key="k3", method="pca", delegate=False),
    )
    props = form("compute_projection", request)
    # the Embeddings panel lists the projection by a name of the run
    assert props["brain_key"]["default"] == "k3_pca"
    messages = run_in_app(
        "compute_projection",
        dict(request, params=dict(request["params"], brain_key="k3_pca")),
    )
    assert triggers(messages, "reload_dataset")
    text = shown(messages)
    assert "`k3_pca`" in text and "Colour by" in text, text
    assert "`k3_cluster`" in text, text
    # and says what it shows: "'emb' of clustering run 'k3' (MANUAL)"
    config = ds.get_brain_info("k3_pca").config
    assert config.model == "'emb' of clustering run 'k3'"

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with llm_server.LLMServer(api_key=KEY) as server:
        request = app_request(
            ds,
            dict(
                run_key="k3",
                base_url=server.url,
                images_per_cluster=2,
                confirm_send=True,
            ),
        )
        # a small run is not delegated by default any more
        assert form("label_clusters", request)["delegate"]["default"] is False
        assert not delegates("label_clusters", request)
        messages = run_in_app(
            "label_clusters",
            dict(request, params=dict(request["params"], delegate=False)),
        )
    assert triggers(messages, "reload_dataset")
    text = shown(messages)
    assert "3 clusters named" in text and "`k3_cluster_label`" in text
    assert "Red images" in text, text


def test_python_calls_return_the_result_and_keep_working(ds):
    op = foo.get_operator(uri("compute_clusters"))
    result = op(ds, "py", "emb", method="kmeans", kmeans__n_clusters=3)
    assert not result.delegated
    assert result.result["n_clusters"] == 3
    assert result.result["summary"][0].startswith("kmeans")

    result = foo.execute_operator(
        uri("compute_clusters"),
        ctx=dict(
            view=ds.view(),
            params=dict(
                run_key="ex",
                embeddings_field="emb",
                method="kmeans",
                kmeans__n_clusters=2,
            ),
        ),
    )
    assert result.result["n_clusters"] == 2


def test_run_info_shows_the_summary_first(ds):
    foo.get_operator(uri("compute_clusters"))(
        ds, "k3", "emb", method="kmeans", kmeans__n_clusters=3
    )
    request = app_request(ds, dict(run_key="k3"))
    result = foo.execute_operator(
        uri("get_clustering_run_info"),
        ctx=dict(dataset=ds, params=dict(run_key="k3")),
    ).result
    prop = asyncio.run(
        resolve_type(
            OperatorRegistry(),
            uri("get_clustering_run_info"),
            dict(request, target="outputs", results=result),
        )
    ).to_json()
    names = list(prop["type"]["properties"])
    assert names[0] == "report" and names[-1] == "statistics", names
    report = prop["type"]["properties"]["report"]["default"]
    assert "3 clusters of 90 samples" in report, report
    assert "lower is better" in report  # the metrics in words
    assert list(result["statistics"])[-1] == "clusters"


# --------------------------------------------------------------------------
# 3. Errors belong in the form
# --------------------------------------------------------------------------


def _error(props, key):
    prop = props[key]
    assert prop.get("invalid"), (key, prop)
    return prop["error_message"]


def test_the_form_offers_only_vector_fields(ds):
    props = form("compute_clusters", app_request(ds, {}))
    choices = [
        c["value"] for c in props["embeddings_field"]["view"]["choices"]
    ]
    assert choices == ["emb"], choices

    props = form("compute_projection", app_request(ds, {"source": "field"}))
    values = props["embeddings_field"]["type"]["values"]
    assert values == ["emb"], values


@pytest.mark.parametrize(
    "params, key, words",
    [
        (dict(embeddings_field="missing"), "embeddings_field", "no field"),
        (
            dict(embeddings_field="ground_truth.logits"),
            "embeddings_field",
            "nested",
        ),
        (dict(embeddings_field="unused"), "embeddings_field", "No sample"),
        (dict(embeddings_field="matrix"), "embeddings_field", "shape"),
        (dict(kmeans__n_clusters=500), "kmeans__n_clusters", "larger than"),
        (
            dict(kmeans__n_clusters=None, kmeans__k_min=9, kmeans__k_max=4),
            "kmeans__k_min",
            "must not exceed",
        ),
        (
            dict(method="hdbscan", hdbscan__min_cluster_size=200),
            "hdbscan__min_cluster_size",
            "larger than the 90 samples",
        ),
        (dict(cluster_field="emb"), "cluster_field", "already exists"),
        (dict(cluster_field="_rand"), "cluster_field", "reserved"),
        (
            dict(
                method="agglomerative",
                agglomerative__metric="cosine",
                agglomerative__linkage="ward",
            ),
            "agglomerative__linkage",
            "euclidean",
        ),
    ],
)
def test_errors_are_shown_in_the_form(ds, params, key, words):
    request = app_request(ds, clusters_params(**params))
    message = _error(form("compute_clusters", request), key)
    assert words in message, message
    # and nothing runs: the request is refused as invalid
    with pytest.raises(ExecutionError, match="Validation error"):
        foo.execute_operator(
            uri("compute_clusters"),
            ctx=dict(dataset=ds, params=clusters_params(**params)),
        )
    ds.reload()
    assert not ds.has_field("r_cluster")


def test_k_is_checked_against_the_target_view(ds):
    view = ds.limit(20)
    request = app_request(
        ds, clusters_params(kmeans__n_clusters=30), view=view
    )
    props = form("compute_clusters", dict(request))
    props = form(
        "compute_clusters",
        dict(
            request,
            params=dict(request["params"], view_target="CURRENT_VIEW"),
        ),
    )
    assert "20 samples" in _error(props, "kmeans__n_clusters")
    # the whole dataset has 90
    props = form(
        "compute_clusters",
        dict(request, params=dict(request["params"], view_target="DATASET")),
    )
    assert not props["kmeans__n_clusters"].get("invalid")


def test_samples_without_vectors_are_named_in_the_form(ds):
    ds.take(5, seed=1).set_field("emb", None).save()
    request = app_request(ds, clusters_params())
    message = _error(form("compute_clusters", request), "embeddings_field")
    assert "5 of 90 samples have no vector" in message, message
    request = app_request(ds, clusters_params(skip_missing=True))
    assert not form("compute_clusters", request)["embeddings_field"].get(
        "invalid"
    )


def test_errors_found_while_running_read_as_one_line(ds):
    """A file that cannot be read is found only by running: the App gets
    one readable line, in the dialog and as the run's error."""
    broken = ds.first()
    broken.filepath = "/nonexistent/gone.png"
    broken.save()
    request = app_request(
        ds,
        dict(
            model="pixels",
            embeddings_field="px",
            skip_failures=False,
            delegate=False,
        ),
    )
    messages = run_in_app("compute_embeddings", request)
    (failure,) = [m for m in messages if m.get("error")]
    assert "\n" not in failure["error"] and "Traceback" not in failure["error"]
    assert failure["error"].startswith("Cannot embed image"), failure
    assert "gone.png" in failure["error"], failure
    # in the dialog where the progress was
    (view,) = triggers(messages, "show_output")
    error = view["outputs"]["type"]["properties"]["error"]["view"]
    assert error["description"] == failure["error"], error
    assert not triggers(messages, "reload_dataset")
    ds.reload()
    assert not ds.has_field("px")


# --------------------------------------------------------------------------
# 4. Defaults for an open-source installation
# --------------------------------------------------------------------------


def test_only_the_app_form_applies_the_size_default(ds, plugin, monkeypatch):
    common = __import__(plugin.__name__ + ".operators._common", fromlist=["x"])
    monkeypatch.setitem(common.DELEGATION_THRESHOLD, "compute_clusters", 10)
    params = clusters_params()
    del params["delegate"]

    # the App: a view above the threshold is delegated by default, and
    # the form says what delegation needs
    request = app_request(ds, params)
    props = form("compute_clusters", request)
    assert props["delegate"]["default"] is True
    description = props["delegate"]["view"]["description"]
    assert "fiftyone delegated launch" in description
    assert delegates("compute_clusters", request)

    # Python: without `delegate`, it runs now
    result = foo.execute_operator(
        uri("compute_clusters"), ctx=dict(dataset=ds, params=params)
    )
    assert not result.delegated
    assert result.result["n_clusters"] == 3
    assert (
        DelegatedOperationService().list_operations(dataset_name=ds.name) == []
    )
    assert not delegates(
        "compute_clusters", dict(dataset_name=ds.name, view=[], params=params)
    )


def test_projection_from_a_cluster_defaults_to_the_whole_run(ds, api):
    api.compute_clusters(
        ds, "k3", "emb", method="kmeans", kmeans__n_clusters=3
    )
    one = api.cluster_view(ds, "k3", "0")
    n_one = one.count()
    assert 0 < n_one < 90
    # what the explorer's "Compute projection" button opens
    request = app_request(ds, dict(source="run", run_key="k3"), view=one)
    props = form("compute_projection", request)
    assert props["view_target"]["default"] == "DATASET"
    notice = props["target_notice"]["view"]["label"]
    assert "all 90 samples of run 'k3'" in notice, notice
    assert f"not only the {n_one}" in notice, notice

    params = dict(
        source="run",
        run_key="k3",
        brain_key=props["brain_key"]["default"],
        method="pca",
        view_target="DATASET",
        delegate=False,
    )
    result = result_of(
        run_in_app("compute_projection", app_request(ds, params, view=one))
    )
    assert result["n_samples"] == 90


# --------------------------------------------------------------------------
# 5. Keys never travel as parameters (issue 18)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, key",
    [
        (dict(api_key=KEY), "api_key"),
        (dict(base_url=f"http://user:{KEY}@127.0.0.1:9/v1"), "base_url"),
        (dict(base_url=f"http://127.0.0.1:9/v1?api_key={KEY}"), "base_url"),
    ],
)
def test_secrets_are_refused_before_anything_is_queued(ds, api, params, key):
    api.compute_clusters(
        ds, "k3", "emb", method="kmeans", kmeans__n_clusters=3
    )
    svc = DelegatedOperationService()
    full = dict(run_key="k3", confirm_send=True, **params)
    with pytest.raises(ExecutionError, match=rf"Path: {key}"):
        foo.execute_operator(
            uri("label_clusters"),
            ctx=dict(dataset=ds, params=full, request_delegation=True),
        )
    queued = svc.list_operations(dataset_name=ds.name)
    assert queued == [], [q.__dict__ for q in queued]

    # shown in the form, with what to do instead
    message = _error(form("label_clusters", app_request(ds, full)), key)
    assert "OPENAI_API_KEY" in message and KEY not in message

    # every operator refuses a key among its parameters
    with pytest.raises(ExecutionError, match="Path: api_key"):
        foo.get_operator(uri("compute_clusters"))(
            ds, "x", "emb", method="kmeans", api_key=KEY, delegate=True
        )
    assert svc.list_operations(dataset_name=ds.name) == []


def test_rename_and_delete_say_what_they_did(ds):
    foo.get_operator(uri("compute_clusters"))(
        ds, "k3", "emb", method="kmeans", kmeans__n_clusters=3
    )

    def report(name, params):
        result = foo.execute_operator(
            uri(name), ctx=dict(dataset=ds, params=params)
        ).result
        prop = asyncio.run(
            resolve_type(
                OperatorRegistry(),
                uri(name),
                dict(
                    app_request(ds, params), target="outputs", results=result
                ),
            )
        ).to_json()
        return prop["type"]["properties"]["report"]["default"]

    text = report("rename_clustering_run", dict(run_key="k3", new_run_key="k"))
    assert "`k3` is now `k`" in text, text
    text = report("delete_clustering_run", dict(run_key="k"))
    assert "Deleted run `k`" in text and "`k3_cluster`" in text, text


def test_label_audit_and_outliers_in_the_app(ds):
    """Both curation operators: a form with the run and the label field
    preset, progress, a result that names what was written, a reload."""
    foo.get_operator(uri("compute_clusters"))(
        ds, "k3", "emb", method="kmeans", kmeans__n_clusters=3
    )
    # one red sample labelled green: the audit's one suspect
    wrong = ds.match(F("ground_truth.label") == "red").first()
    wrong.ground_truth.label = "green"
    wrong.save()

    request = app_request(ds, dict(delegate=False))
    props = form("audit_labels", request)
    assert props["run_key"]["default"] == "k3"
    assert props["label_field"]["default"] == "ground_truth"
    assert props["threshold"]["default"] == 0.8
    request = app_request(  # as the App sends it: the defaults filled in
        ds,
        dict(
            run_key="k3",
            label_field="ground_truth",
            method="trust_vote",
            threshold=0.8,
            delegate=False,
        ),
    )
    messages = run_in_app("audit_labels", request)
    assert triggers(messages, "reload_dataset")
    assert triggers(messages, "set_progress")
    text = shown(messages)
    # a headline: the App shows no title above a streamed result
    assert text.startswith(
        "**Labels audited**: 1 suspects of 90 samples in run `k3`"
    ), text
    assert "1 suspects of 90 samples" in text, text
    assert "`k3_label_suspicion`" in text and "k3 label suspects" in text
    ds.reload()
    (suspect,) = ds.load_saved_view("k3 label suspects").values("id")
    assert suspect == wrong.id
    assert ds[wrong.id]["k3_label_suggestion"] == "red"

    request = app_request(
        ds,
        dict(run_key="k3", top=5, method="relative_distance", delegate=False),
    )
    messages = run_in_app("compute_outliers", request)
    assert triggers(messages, "reload_dataset")
    text = shown(messages)
    assert text.startswith("**Outliers scored**: 90 samples of run `k3`")
    assert "the top 5 score" in text and "`k3_outlier`" in text, text

    # from Python, through __call__
    result = foo.get_operator(uri("compute_outliers"))(
        ds, "k3", method="knn_distance", top=3
    )
    assert result.result["config"]["top"] == 3
    info = foo.get_operator(uri("get_clustering_run_info"))(ds, "k3")
    assert set(info.result["actions"]) == {"audit_labels", "compute_outliers"}
