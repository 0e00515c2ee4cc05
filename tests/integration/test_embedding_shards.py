"""compute_embeddings in shards over several delegated workers.

- Every bad input is refused with a message before anything is queued or
  written: ``shards`` < 1 or not an integer, more shards than samples, a
  field that shards are still writing (for a second sharded run, a plain
  run and ``compute_clusters``), an unknown shard.
- In one process (FiftyOne's own executor of queued operations): the
  shards of a run embed every sample once, as one process does, with
  their progress recorded on each operation.
- With two real ``fiftyone delegated launch`` workers: one is killed
  (SIGKILL) in the middle of a shard, its operation is marked failed and
  run again, and the shard resumes where it stopped.
"""

import os
import shutil
import signal
import subprocess
import sysconfig
import time

import numpy as np
import pytest
from bson import ObjectId

import fiftyone as fo
import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService
from fiftyone.operators.executor import ExecutionError, ExecutionRunState

PLUGIN = "@curate/clustering"
EMBED = f"{PLUGIN}/compute_embeddings"


def _images(folder, n, size=(96, 72)):
    """``n`` JPEGs made from a natural image, shifted and brightened."""
    import skimage.data as skd
    from PIL import Image

    base = Image.fromarray(skd.astronaut()).resize(
        (size[0] + 64, size[1] + 48)
    )
    arr = np.asarray(base)
    paths = []
    for i in range(n):
        x, y = i % 64, (i * 7) % 48
        crop = arr[y : y + size[1], x : x + size[0]].astype(np.int16)
        crop = np.clip(crop + (i % 40) - 20, 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"{i:05d}.jpg")
        Image.fromarray(crop).save(path, quality=85)
        paths.append(path)
    return paths


def _dataset(name, folder, n, size=(96, 72)):
    dataset = fo.Dataset(name)
    dataset.persistent = True
    dataset.add_samples(
        [fo.Sample(filepath=p) for p in _images(folder, n, size)]
    )
    return dataset


def _schema(dataset):
    dataset.reload()
    return sorted(dataset.get_field_schema()), sorted(dataset.list_runs())


def test_bad_shard_requests_are_refused(api, dataset_name, tmp_path):
    dataset = _dataset(dataset_name, str(tmp_path), 12)
    op = foo.get_operator(EMBED)
    before = _schema(dataset)
    for shards, message in (
        (0, "shards must be >= 1; got 0"),
        (-2, "shards must be >= 1; got -2"),
        ("2", "shards must be an integer; got '2'"),
        (True, "shards must be an integer; got True"),
        (13, "shards=13 is more than the 12 samples to embed into 'px'"),
    ):
        with pytest.raises((api.ParamError, api.InputError), match=message):
            api.plan_embedding_shards(dataset, "px", shards, model="pixels")
    # the operator's form refuses them before anything is queued
    with pytest.raises(ExecutionError, match="more than the 12 samples"):
        op(dataset, "px", model="pixels", shards=13)
    with pytest.raises(ExecutionError, match="shards"):
        op(dataset, "px", model="pixels", shards=0)
    with pytest.raises(api.ParamError, match="Unknown precision"):
        api.plan_embedding_shards(
            dataset, "px", 2, model="pixels", precision="float8"
        )
    assert _schema(dataset) == before
    assert not DelegatedOperationService().list_operations(
        dataset_name=dataset_name
    )

    # Shards queued, none run yet: the field is being written
    queued = op(dataset, "px", model="pixels", pixels__size=8, shards=3)
    assert len(queued.result["operations"]) == 3
    dataset.set_values("emb", list(np.eye(12, 4, dtype=np.float32)))
    before = _schema(dataset)
    for call in (
        lambda: api.compute_clusters(
            dataset, "r", "px", method="kmeans", kmeans__n_clusters=2
        ),
        lambda: api.compute_embeddings(dataset, "px", model="pixels"),
        lambda: api.plan_embedding_shards(dataset, "px", 2, model="pixels"),
    ):
        with pytest.raises(api.InputError) as e:
            call()
        assert "Field 'px'" in str(e.value)
        assert "shards 1/3 (queued), 2/3 (queued), 3/3 (queued)" in str(
            e.value
        )
    # the operator refuses it too, before anything runs
    with pytest.raises(ExecutionError, match="is being written by a shard"):
        foo.get_operator(f"{PLUGIN}/compute_clusters")(
            dataset, run_key="r", embeddings_field="px", method="kmeans"
        )
    assert _schema(dataset) == before
    # another field is free
    api.compute_clusters(
        dataset, "r", "emb", method="kmeans", kmeans__n_clusters=2
    )
    with pytest.raises(api.InputError, match="is not known"):
        api.run_embedding_shard(dataset, "px", "nogroup", 0, model="pixels")

    status = api.embedding_shards_status(dataset, "px")
    assert not status["complete"]
    assert status["pending"] == [0, 1, 2]
    assert [s["count"] for s in status["shards"]] == [4, 4, 4]
    assert api.cancel_embedding_shards(dataset, "px") == 3
    assert api.embedding_shards_status(dataset, "px")["complete"]
    api.compute_embeddings(dataset, "px", model="pixels", progress=False)


def test_shards_run_by_the_executor(api, dataset_name, tmp_path):
    """Three shards run by FiftyOne's executor of queued operations: each
    sample gets the vector one process computes, every shard records its
    progress, and the status says when all are complete."""
    dataset = _dataset(dataset_name, str(tmp_path), 90)
    dataset.limit(10).set_values(
        "px", [np.zeros(192, np.float32)] * 10
    )  # already there: skipped unless overwriting
    queued = foo.get_operator(EMBED)(
        dataset, "px", model="pixels", pixels__size=8, shards=3
    )
    assert queued.result["to_embed"] == 80
    assert queued.result["skipped"] == 10
    assert [s["count"] for s in queued.result["shards"]] == [26, 27, 27]
    service = DelegatedOperationService()
    ops = [service.get(ObjectId(i)) for i in queued.result["operations"]]
    assert [o.label for o in ops] == [
        f"compute_embeddings:px:shard-{k}/3" for k in (1, 2, 3)
    ]
    results = service.execute_queued_operations(dataset_name=dataset_name)
    assert len(results) == 3
    for op_id in queued.result["operations"]:
        doc = service.get(ObjectId(op_id))
        assert doc.run_state == ExecutionRunState.COMPLETED, doc.result.error
        assert doc.status.progress == 1.0
    status = api.embedding_shards_status(dataset, "px")
    assert status["complete"], status
    assert status["with_vector"] == 90
    assert sum(s["embedded"] for s in status["shards"]) == 80
    assert "3/3 shards of 'px' completed" in status["summary"]
    api.compute_embeddings(
        dataset, "ref", model="pixels", pixels__size=8, progress=False
    )
    px, ref = (np.stack(dataset.skip(10).values(f)) for f in ("px", "ref"))
    np.testing.assert_array_equal(px, ref)

    # overwrite: the old vectors are cleared and every sample re-embedded
    queued = foo.get_operator(EMBED)(
        dataset,
        "px",
        model="pixels",
        pixels__size=8,
        shards=2,
        overwrite=True,
    )
    assert queued.result["to_embed"] == 90
    service.execute_queued_operations(dataset_name=dataset_name)
    assert api.embedding_shards_status(dataset, "px")["complete"]
    np.testing.assert_array_equal(
        np.stack(dataset.values("px")), np.stack(dataset.values("ref"))
    )


# --------------------------------------------------------------------------
# Two real workers, one killed
# --------------------------------------------------------------------------


def _fiftyone_cli():
    path = os.path.join(sysconfig.get_path("scripts"), "fiftyone")
    return path if os.path.isfile(path) else shutil.which("fiftyone")


def _cli(args, env):
    p = subprocess.run(
        [_fiftyone_cli(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


def _launch(env, log_path):
    return subprocess.Popen(
        [_fiftyone_cli(), "delegated", "launch"],
        env=env,
        stdout=open(log_path, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _written(dataset, doc):
    """Vectors already in the database in a shard's id range."""
    bounds = {}
    if doc["lo"] is not None:
        bounds["$gte"] = doc["lo"]
    if doc["hi"] is not None:
        bounds["$lt"] = doc["hi"]
    query = {"px": {"$type": "binData"}}
    if bounds:
        query["_id"] = bounds
    return dataset._sample_collection.count_documents(query)


def _until(check, what, logs, timeout=90):
    deadline = time.time() + timeout
    while True:
        out = check()
        if out:
            return out
        if time.time() > deadline:
            tails = "\n".join(open(p).read()[-1500:] for p in logs)
            pytest.fail(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.03)


def test_two_cli_workers_one_killed_mid_shard(
    api, test_env, dataset_name, tmp_path
):
    shard_store = __import__(
        api.__name__.rsplit(".", 1)[0] + ".shard_store", fromlist=["x"]
    )
    dataset = _dataset(dataset_name, str(tmp_path), 2000, size=(480, 360))
    params = dict(model="pixels", pixels__size=8, batch_size=16)
    queued = foo.get_operator(EMBED)(
        dataset, "px", num_workers=0, shards=4, **params
    )
    ops = queued.result["operations"]
    assert len(ops) == 4
    logs = [str(tmp_path / f"worker{k}.log") for k in (1, 2)]
    workers = [_launch(test_env, p) for p in logs]
    try:
        # Kill the worker of the first shard seen half-written
        def half_written():
            for doc in shard_store.current(dataset, "px"):
                if doc["state"] == "running":
                    n = _written(dataset, doc)
                    if 0 < n < doc["count"] - 64:
                        return doc
            return None

        doc = _until(half_written, "a half-written shard", logs)
        victim = next(w for w in workers if w.pid == doc["pid"])
        _kill(victim)
        written = _written(dataset, doc)
        assert 0 < written < doc["count"]
        killed_op = doc["operation_id"]

        # The other worker takes every other shard; the dead one's stays
        # running, as `fiftyone delegated list` shows
        status = _until(
            lambda: (s := api.embedding_shards_status(dataset, "px"))[
                "pending"
            ]
            == [doc["index"]]
            and s,
            "the other shards",
            logs,
        )
        assert status["shards"][doc["index"]]["state"] == "stalled"
        assert not status["complete"]
        listed = _cli(
            ["delegated", "list", "--dataset", dataset_name], test_env
        )
        row = next(r for r in listed.splitlines() if killed_op in r)
        assert "running (" in row, listed
        assert f"shard-{doc['index'] + 1}/4" in row
        with pytest.raises(api.InputError, match="stalled"):
            api.compute_clusters(dataset, "r", "px", method="kmeans")

        # Marked failed and queued again: the surviving worker resumes it
        _cli(["delegated", "fail", killed_op], test_env)
        _cli(["delegated", "rerun", killed_op], test_env)
        status = _until(
            lambda: (s := api.embedding_shards_status(dataset, "px"))[
                "complete"
            ]
            and s,
            "the rerun shard",
            logs,
        )
    finally:
        for w in workers:
            _kill(w)

    shard = status["shards"][doc["index"]]
    assert shard["attempts"] == 2
    assert shard["skipped"] == written  # resumed, not redone
    assert shard["embedded"] == doc["count"] - written
    others = [s for s in status["shards"] if s["shard"] != doc["index"]]
    assert all(s["attempts"] == 1 and s["skipped"] == 0 for s in others)
    assert written + sum(s["embedded"] for s in status["shards"]) == 2000
    assert status["with_vector"] == 2000

    # Every sample has the vector one process computes
    api.compute_embeddings(
        dataset, "ref", num_workers=0, progress=False, **params
    )
    px, ref = (np.stack(dataset.values(f)) for f in ("px", "ref"))
    np.testing.assert_array_equal(px, ref)
    # and the field can now be clustered
    api.compute_clusters(
        dataset, "r", "px", method="kmeans", kmeans__n_clusters=3
    )
