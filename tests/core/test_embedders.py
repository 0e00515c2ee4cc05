"""Embedders on their own: the thread-count tuner and the fast failure of
weights that cannot be downloaded. The embedders on real images, through
the API and the operators, are tested in tests/integration."""

import time

import pytest


@pytest.fixture(scope="module")
def emb(core_package):
    return core_package.embedders


@pytest.mark.parametrize("fast", [1, 2])
def test_thread_tuner_keeps_the_faster_thread_count(core_package, fast):
    """The CPU thread count is chosen by timing: here a stand-in model runs
    three times slower with the other count."""
    import torch

    def forward(x):
        slow = torch.get_num_threads() != fast
        time.sleep(0.0005 * len(x) * (3 if slow else 1))
        return x * 2

    before = torch.get_num_threads()
    tt = core_package.thread_tuner
    tuner = tt.ThreadTuner(1, {2})
    for i in range(12):
        x = torch.arange(16) + i
        assert torch.equal(tuner.run(forward, x), x * 2)
    assert tuner.best == fast
    assert str(fast) + " CPU threads" in tuner.summary()
    tuner.restore()
    assert torch.get_num_threads() == before


def test_unreachable_weights_server_fails_fast(emb):
    start = time.perf_counter()
    with pytest.raises(emb.WeightsError, match="cannot be reached"):
        emb.check_downloadable(
            "https://weights.invalid/model.pt", "'x'", "Use a local file"
        )
    assert time.perf_counter() - start < emb.PROBE_TIMEOUT + 1
