"""find_duplicates and select_subset as the App runs them: the form shows
the threshold preview (histogram, counts, example pairs) and refuses a
threshold out of range inline; runs stream progress, reload and report;
``__call__`` works from Python."""

import json

import pytest

import fiftyone as fo
import fiftyone.operators as foo

import near_duplicates
from app_requests import app_request, form, run_in_app, shown, uri


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dups-app")
    return near_duplicates.make_images(str(folder), n_digits=120, n_near=24)


@pytest.fixture
def ds(dataset_name, api, images):
    dataset = fo.Dataset(dataset_name)
    dataset.add_samples([fo.Sample(filepath=p) for p in images[0]])
    api.compute_embeddings(dataset, "px", model="pixels")
    dataset.persistent = True
    return dataset


def test_the_form_shows_the_threshold_preview_and_checks_it(ds):
    props = form("find_duplicates", app_request(ds, dict(dup_key="d")))
    assert props["embeddings_field"]["default"] == "px"
    plot = props["preview_plot"]["view"]
    assert plot["name"] == "PlotlyView"
    assert sum(plot["data"][0]["y"]) == len(ds)
    text = (
        props["preview"]["view"]["default"]
        if "default" in props["preview"]["view"]
        else props["preview"]["default"]
    )
    assert "Suggested threshold" in text and "Pairs just above" in text
    assert "/media?filepath=" in text
    assert "takes the suggested one (0.99" in props["threshold"]["view"][
        "description"
    ] or "suggested" in json.dumps(props["threshold"])
    bad = form(
        "find_duplicates",
        app_request(
            ds, dict(dup_key="d", embeddings_field="px", threshold=1.5)
        ),
    )
    assert bad["threshold"].get("invalid"), bad["threshold"]
    assert "out of range" in bad["threshold"]["error_message"]


def test_find_duplicates_and_select_subset_in_the_app(ds, api):
    request = app_request(
        ds,
        dict(
            dup_key="d",
            embeddings_field="px",
            keep="typical",
            exact=True,
            delegate=False,
        ),
    )
    messages = run_in_app("find_duplicates", request)
    text = shown(messages)
    assert "groups of duplicates" in text and "`d_group`" in text, text
    assert "d not kept" in text
    ds.reload()
    assert ds.has_sample_field("d_keep")

    api.compute_clusters(ds, "km", "px", method="kmeans", kmeans__n_clusters=5)
    props = form("select_subset", app_request(ds, dict(delegate=False)))
    assert props["run_key"]["default"] == "km"
    assert "d" in json.dumps(props["dup_key"])
    request = app_request(
        ds,
        dict(run_key="km", n=40, order="spread", dup_key="d", delegate=False),
    )
    text = shown(run_in_app("select_subset", request))
    assert "Subset of 40 samples" in text and "km subset" in text, text
    # bad n: one readable line, nothing written
    request = app_request(ds, dict(run_key="km", n=2, delegate=False))
    messages = run_in_app("select_subset", request)
    errors = [m for m in messages if m.get("error")]
    assert "less than the 5 clusters" in errors[-1]["error"]

    # from Python, through __call__
    out = foo.get_operator(uri("select_subset"))(ds, "km", 25, tag="pick")
    assert out.result["config"]["n"] == 25
    assert ds.count_sample_tags()["pick"] == 25
    out = foo.get_operator(uri("find_duplicates"))(
        ds, "d2", "px", threshold=0.999
    )
    assert out.result["threshold"] == 0.999
