"""assign_clusters and compare_clustering_runs as the App and Python run
them, and the stability option in compute_clusters' form."""

import asyncio

import numpy as np
import pytest

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.executor import resolve_type
from fiftyone.operators.registry import OperatorRegistry

from app_requests import app_request, form, run_in_app, shown, uri


@pytest.fixture
def ds(dataset_name, plugin):
    rng = np.random.default_rng(0)
    X = np.vstack(
        [c + rng.normal(size=(40, 8)) for c in np.eye(8)[:3] * 10]
    ).astype(np.float32)
    dataset = fo.Dataset(dataset_name)
    dataset.add_samples(
        [
            fo.Sample(
                filepath=f"/x/{i}.png", tags=["new"] if i % 4 == 0 else []
            )
            for i in range(len(X))
        ]
    )
    dataset.set_values("emb", list(X))
    dataset.persistent = True
    return dataset


def test_assign_and_compare_in_the_app_and_from_python(ds):
    compute = foo.get_operator(uri("compute_clusters"))
    props = form("compute_clusters", app_request(ds, {}))
    assert props["stability_resamples"]["default"] == 0
    compute(
        ds.match_tags("new", bool=False),
        "k",
        "emb",
        method="kmeans",
        kmeans__n_clusters=3,
        stability_resamples=5,
    )
    props = form("assign_clusters", app_request(ds, {}))
    assert props["run_key"]["default"] == "k"
    assert props["novelty_factor"]["default"] == 1.3
    messages = run_in_app(
        "assign_clusters",
        app_request(ds, dict(run_key="k", novelty_factor=1.3, delegate=False)),
    )
    text = shown(messages)
    assert "Assigned 30 new samples" in text, text
    assert "`k_novel`" in text
    assert None not in ds.values("k_cluster")

    compute(ds, "k2", "emb", method="kmeans", kmeans__n_clusters=3)
    result = foo.get_operator(uri("compare_clustering_runs"))(ds, "k", "k2")
    assert result.result["ari"] > 0.9
    props = form("compare_clustering_runs", app_request(ds, {}))
    assert props["run_key"]["default"] == "k"
    assert props["other_run_key"]["default"] == "k2"
    request = app_request(ds, dict(run_key="k", other_run_key="k2"))
    prop = asyncio.run(
        resolve_type(
            OperatorRegistry(),
            uri("compare_clustering_runs"),
            dict(request, target="outputs", results=result.result),
        )
    )
    report = prop.to_json()["type"]["properties"]["report"]["default"]
    assert "ARI " in report and "| kept |" in report

    # assign from Python: nothing new left, a clear error
    with pytest.raises(Exception, match="holds no sample"):
        foo.get_operator(uri("assign_clusters"))(ds, "k")
