import numpy as np
import fiftyone as fo

import importlib.util, sys, os
spec = importlib.util.spec_from_file_location("llm_server", os.path.join(os.path.dirname(__file__), "llm_server.py"))
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
LLMServer, COLOURS = m.LLMServer, m.COLOURS


def test_tmp(api, dataset_name, tmp_path, monkeypatch):
    from PIL import Image
    rng = np.random.default_rng(0)
    ds = fo.Dataset(dataset_name)
    samples = []
    vecs = []
    for c, name in enumerate(["red", "green", "blue"]):
        centre = rng.normal(size=8) * 5
        for i in range(10):
            p = tmp_path / f"{name}{i}.png"
            Image.new("RGB", (700, 300), COLOURS[name]).save(p)
            samples.append(fo.Sample(filepath=str(p)))
            vecs.append(centre + rng.normal(size=8))
    ds.add_samples(samples)
    ds.set_values("embeddings", [np.asarray(v, np.float32) for v in vecs])
    api.compute_clusters(ds, "run1", "embeddings", method="kmeans", kmeans__n_clusters=3)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    with LLMServer(api_key="sk-secret") as server:
        out = api.label_clusters(ds, "run1", base_url=server.url)
        print(out)
        print(server.violations, len(server.requests))
    print(ds.count_values("run1_cluster_label"))
    print(api.get_clustering_run_info(ds, "run1"))
