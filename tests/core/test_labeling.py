"""Cluster naming, core level: answers, estimates, thumbnails, the choice
of images, and the real ``openai`` client against a local chat-completions
server (rate limits, server errors, timeouts, malformed answers, rejected
keys, concurrency)."""

import importlib
import importlib.util
import io
import logging
import time

import numpy as np
import pytest
from PIL import Image

import llm_server  # noqa: E402 (made importable by conftest)

LLMServer = llm_server.LLMServer
COLOURS = llm_server.COLOURS

KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def L(core_package):
    return core_package.labeling


@pytest.fixture
def server():
    with LLMServer(api_key=KEY) as s:
        yield s


@pytest.fixture
def images(tmp_path):
    """Five 800x600 PNGs per colour."""
    paths = {}
    for name in ("red", "green", "blue"):
        paths[name] = []
        for i in range(5):
            p = tmp_path / f"{name}{i}.png"
            Image.new("RGB", (800, 600), COLOURS[name]).save(p)
            paths[name].append(str(p))
    return paths


def _jobs(L, images, colours=("red", "green", "blue")):
    return [
        L.Job(str(i), images[c], [f"{c}{j}" for j in range(5)])
        for i, c in enumerate(colours)
    ]


def _labeler(L, server, **kwargs):
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("max_retries", 3)
    return L.OpenAILabeler(
        KEY, model="test-model", base_url=server.url, **kwargs
    )


def _jpeg(colour, size=(64, 48)):
    buf = io.BytesIO()
    Image.new("RGB", size, COLOURS[colour]).save(buf, format="JPEG")
    return buf.getvalue()


# --------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"label": "Red cars", "description": "Cars painted red."}',
        'Sure:\n```json\n{"label": "Red cars", "description": '
        '"Cars painted red."}\n```\nAnything else?',
        'Here you go: {"label": "Red cars", "description": '
        '"Cars painted red."} Hope it helps.',
        "Label: Red cars\nDescription: Cars painted red.",
        "**Name:** Red cars\n**Description:** Cars painted red.",
        '{"name": "Red cars", "description": "Cars painted red."}',
        '"Red cars"\nCars painted red.',
    ],
)
def test_parse_answer_is_tolerant(L, text):
    label = L.parse_answer(text)
    assert label == L.ClusterLabel("Red cars", "Cars painted red.")


def test_parse_answer_cleans_and_bounds(L):
    label = L.parse_answer(
        '{"label": "  '
        + "word " * 40
        + '", "description": "'
        + "x " * 400
        + '"}'
    )
    assert len(label.name) <= L.MAX_LABEL_CHARS
    assert len(label.description) <= L.MAX_DESCRIPTION_CHARS + 3
    assert "  " not in label.name


@pytest.mark.parametrize(
    "text",
    ["", "   ", '{"label": "Red', '{"description": "no label"}', "x " * 200],
)
def test_parse_answer_rejects_unusable(L, text):
    with pytest.raises(L.AnswerError):
        L.parse_answer(text)


# --------------------------------------------------------------------------
# Cost estimate
# --------------------------------------------------------------------------


def test_estimate(L):
    e = L.estimate(100, 5, "low")
    assert e["requests"] == 100
    assert e["images"] == 500
    assert e["total_tokens"] == e["input_tokens"] + e["output_tokens"]
    # 85 tokens per low-detail image, plus the prompt
    assert 500 * 85 < e["input_tokens"] < 500 * 85 + 100 * 200
    high = L.estimate(100, 5, "high")
    assert high["input_tokens"] > e["input_tokens"]
    more = L.estimate(100, 5, "low", context="street photos " * 20)
    assert more["input_tokens"] > e["input_tokens"]
    assert L.estimate(0, 5)["total_tokens"] == 0
    with pytest.raises(ValueError, match="detail"):
        L.estimate(1, 1, "ultra")


# --------------------------------------------------------------------------
# Thumbnails
# --------------------------------------------------------------------------


def _open(jpeg):
    img = Image.open(io.BytesIO(jpeg))
    img.load()
    return img


def test_thumbnail_shrinks_to_512_jpeg(L, tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGBA", (1600, 900), (10, 200, 10, 128)).save(p)
    img = _open(L.make_thumbnail(str(p)))
    assert img.format == "JPEG"
    assert img.mode == "RGB"
    assert img.size == (512, 288)


def test_thumbnail_keeps_small_images(L, tmp_path):
    p = tmp_path / "small.png"
    Image.new("L", (40, 30), 200).save(p)
    img = _open(L.make_thumbnail(str(p)))
    assert img.format == "JPEG" and img.size == (40, 30)


def test_thumbnail_of_16_bit_and_palette_images(L, tmp_path):
    p16 = tmp_path / "deep.png"
    arr = (np.arange(700 * 300) % 65535).reshape(300, 700).astype(np.uint16)
    Image.fromarray(arr).save(p16)
    assert max(_open(L.make_thumbnail(str(p16))).size) == 512
    pal = tmp_path / "pal.gif"
    Image.new("P", (600, 600), 3).save(pal, transparency=3)
    assert _open(L.make_thumbnail(str(pal))).size == (512, 512)


def test_thumbnail_applies_exif_orientation(L, tmp_path):
    p = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    Image.new("RGB", (1000, 600), (0, 0, 255)).save(p, exif=exif)
    assert _open(L.make_thumbnail(str(p))).size == (307, 512)


# --------------------------------------------------------------------------
# Which images are shown
# --------------------------------------------------------------------------


def test_select_representative_then_spread(L):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)).astype(np.float32) * 0.1
    X[7] = 10.0  # far out: the first spread-out pick
    X[9] = -10.0  # far the other way: the second
    ids = [f"s{i}" for i in range(50)]
    reps = ["s3", "s1", "s2", "s4"]
    chosen = L.select_members(ids, X, 5, representatives=reps)
    assert chosen[:3] == ["s3", "s1", "s2"]
    assert set(chosen[3:]) == {"s7", "s9"}
    assert len(set(chosen)) == 5


def test_select_handles_small_clusters_and_missing_vectors(L):
    ids = ["a", "b", "c"]
    assert sorted(L.select_members(ids, None, 5, representatives=["b"])) == [
        "a",
        "b",
        "c",
    ]
    chosen = L.select_members(ids, None, 2, representatives=["b"])
    assert chosen[0] == "b" and len(set(chosen)) == 2
    assert L.select_members([], None, 5) == []


def test_select_random_is_seeded(L):
    ids = [f"s{i}" for i in range(100)]
    a = L.select_members(ids, None, 5, "random", seed=[1, 3])
    b = L.select_members(ids, None, 5, "random", seed=[1, 3])
    c = L.select_members(ids, None, 5, "random", seed=[2, 3])
    assert a == b and a != c and len(set(a)) == 5
    with pytest.raises(ValueError, match="selection"):
        L.select_members(ids, None, 5, "best")


# --------------------------------------------------------------------------
# The OpenAI client against a local server
# --------------------------------------------------------------------------


def test_labeler_sends_thumbnails_and_reads_structured_answer(
    L, server, images
):
    labeler = _labeler(L, server)
    jpegs = [L.make_thumbnail(p) for p in images["green"]]
    label = labeler.label(jpegs, L.build_prompt(5, "test photos"))
    assert label == L.ClusterLabel(
        "Green images", "Pictures that are mostly green."
    )
    (req,) = server.requests
    assert server.violations == []
    assert req["schema"] is True
    assert req["model"] == "test-model"
    assert req["images"] == 5
    assert req["sizes"] == [(512, 384)] * 5
    assert req["details"] == ["low"] * 5
    assert "About the dataset: test photos" in req["text"]
    assert labeler.usage == {"prompt_tokens": 100, "completion_tokens": 20}


def test_rate_limit_honours_retry_after(L, server):
    server.inject("rate_limit", times=1, retry_after="1")
    labeler = _labeler(L, server)
    t = time.monotonic()
    label = labeler.label([_jpeg("red")], "name it")
    elapsed = time.monotonic() - t
    assert label.name == "Red images"
    assert [r["status"] for r in server.requests] == [429, 200]
    assert 1.0 <= elapsed < 3.0
    gap = server.requests[1]["time"] - server.requests[0]["time"]
    assert gap >= 1.0


def test_retry_after_as_http_date(L, server):
    import email.utils

    # A date has a resolution of one second: a whole second 1-2 s ahead
    target = int(time.time()) + 2
    when = email.utils.formatdate(target, usegmt=True)
    server.inject("rate_limit", times=1, retry_after=when)
    labeler = _labeler(L, server)
    assert labeler.label([_jpeg("red")], "p").name == "Red images"
    # The retry waited for that moment, and not much longer
    assert target - 0.05 <= time.time() < target + 1.5


def test_server_errors_are_retried_with_backoff(L, server):
    server.inject("server_error", times=2)
    labeler = _labeler(L, server, backoff_base=0.1)
    t = time.monotonic()
    assert labeler.label([_jpeg("blue")], "name it").name == "Blue images"
    assert [r["status"] for r in server.requests] == [500, 500, 200]
    # Waits of 0.1 then 0.2 s, each with up to 50% jitter below
    assert time.monotonic() - t >= 0.15


def test_slow_answer_times_out_and_is_retried(L, server):
    server.inject("slow", times=1, seconds=3.0)
    labeler = _labeler(L, server, timeout=0.5)
    t = time.monotonic()
    assert labeler.label([_jpeg("red")], "name it").name == "Red images"
    assert 0.5 <= time.monotonic() - t < 2.5
    assert len(server.requests) == 2


def test_persistent_failure_says_why(L, server):
    server.inject("server_error", times=None)
    labeler = _labeler(L, server, max_retries=2)
    with pytest.raises(L.LabelError) as e:
        labeler.label([_jpeg("red")], "name it")
    assert "HTTP 500" in str(e.value)
    assert "gave up after 3 attempts" in str(e.value)
    assert len(server.requests) == 3


def test_timeouts_that_persist_say_so(L, server):
    server.inject("slow", times=None, seconds=1.0)
    labeler = _labeler(L, server, timeout=0.2, max_retries=1)
    with pytest.raises(L.LabelError, match="no answer within 0.2 s"):
        labeler.label([_jpeg("red")], "name it")


def test_malformed_answers(L, server):
    labeler = _labeler(L, server, max_retries=1)
    server.inject(
        "content",
        times=1,
        content='Sure! ```json\n{"label": "Fenced", "description": "d."}\n```',
    )
    assert labeler.label([_jpeg("red")], "p").name == "Fenced"
    # Garbage first, then a good answer: retried
    server.inject("content", times=1, content='{"label": "Trunc')
    assert labeler.label([_jpeg("red")], "p").name == "Red images"
    # Garbage every time: reported
    server.inject("content", times=None, content="")
    with pytest.raises(L.LabelError, match="unusable answer"):
        labeler.label([_jpeg("red")], "p")


@pytest.mark.parametrize("style", ["fenced", "prose", "plain"])
def test_server_without_structured_output(L, style):
    with LLMServer(api_key=KEY, structured=False, style=style) as server:
        labeler = _labeler(L, server)
        assert labeler.label([_jpeg("green")], "p") == L.ClusterLabel(
            "Green images", "Pictures that are mostly green."
        )
        # Later requests go without the schema straight away
        labeler.label([_jpeg("red")], "p")
        assert [r["schema"] for r in server.requests] == [True, False, False]
        assert labeler.structured is False


def test_client_errors_are_not_retried(L, server):
    server.inject("bad_request", times=None)
    labeler = _labeler(L, server)
    with pytest.raises(L.LabelError, match="HTTP 400"):
        labeler.label([_jpeg("red")], "p")
    assert len(server.requests) == 1


def test_unreachable_server(L):
    with LLMServer() as s:
        url = s.url
    labeler = L.OpenAILabeler(
        KEY, base_url=url, timeout=1, max_retries=1, backoff_base=0.01
    )
    with pytest.raises(L.LabelError, match="could not connect"):
        labeler.label([_jpeg("red")], "p")


def test_rejected_key_is_fatal_and_never_shown(L, caplog):
    secret = "sk-live-SECRET-9f8e7d6c5b4a"
    caplog.set_level(logging.DEBUG)
    with LLMServer(api_key="another-key") as server:
        labeler = L.OpenAILabeler(
            secret, base_url=server.url, timeout=2, backoff_base=0.01
        )
        with pytest.raises(L.FatalLabelError) as e:
            labeler.label([_jpeg("red")], "p")
    assert len(server.requests) == 1
    message = str(e.value)
    assert "OPENAI_API_KEY" in message and "401" in message
    assert secret not in message
    assert secret[-8:] not in message
    assert secret not in repr(labeler)
    assert secret not in caplog.text
    assert caplog.records  # the client did log at debug level


def test_labeler_needs_a_key(L):
    with pytest.raises(L.LabelError, match="API key"):
        L.OpenAILabeler("", base_url="http://127.0.0.1:9/v1")


# --------------------------------------------------------------------------
# Many clusters
# --------------------------------------------------------------------------


def test_label_clusters_reports_failures_and_keeps_the_rest(L, server, images):
    server.inject("server_error", times=None, colour="green")
    seen = []
    fractions = []
    outcomes = L.label_clusters(
        _jobs(L, images),
        _labeler(L, server, max_retries=1),
        max_concurrency=3,
        on_outcome=seen.append,
        progress=lambda f, label: fractions.append(f),
    )
    by_id = {o.cluster_id: o for o in outcomes}
    assert seen == outcomes
    assert by_id["0"].label.name == "Red images"
    assert by_id["2"].label.name == "Blue images"
    assert by_id["1"].label is None
    assert "HTTP 500" in by_id["1"].error
    assert by_id["0"].shown_ids == [f"red{j}" for j in range(5)]
    assert fractions[-1] == 1.0
    assert server.violations == []


def test_label_clusters_runs_requests_concurrently(L, images):
    jobs = [L.Job(str(i), images["red"][:1], ["x"]) for i in range(12)]
    with LLMServer(api_key=KEY, latency=0.4) as server:
        t = time.monotonic()
        outcomes = L.label_clusters(
            jobs, _labeler(L, server), max_concurrency=4
        )
        elapsed = time.monotonic() - t
    assert all(o.label is not None for o in outcomes)
    assert server.max_in_flight == 4
    # 3 waves of 0.4 s; a sequential client needs 4.8 s
    assert 1.2 <= elapsed < 3.0


def test_label_clusters_skips_unreadable_images(L, server, images, tmp_path):
    paths = [str(tmp_path / "missing.png")] + images["blue"][:2]
    jobs = [
        L.Job("0", paths, ["m", "b0", "b1"]),
        L.Job("1", [str(tmp_path / "nope.jpg")], ["n"]),
    ]
    outcomes = {
        o.cluster_id: o for o in L.label_clusters(jobs, _labeler(L, server))
    }
    assert outcomes["0"].label.name == "Blue images"
    assert outcomes["0"].shown_ids == ["b0", "b1"]
    assert outcomes["1"].label is None
    assert "could be read" in outcomes["1"].error
    assert len(server.requests) == 1


def test_label_clusters_stops_on_a_rejected_key(L, images):
    jobs = [L.Job(str(i), images["red"][:1], ["x"]) for i in range(20)]
    seen = []
    with LLMServer(api_key="other", latency=0.05) as server:
        labeler = L.OpenAILabeler(KEY, base_url=server.url, timeout=2)
        with pytest.raises(L.FatalLabelError, match="OPENAI_API_KEY"):
            L.label_clusters(
                jobs, labeler, max_concurrency=2, on_outcome=seen.append
            )
    # Only the requests already in flight were made
    assert len(server.requests) <= 4
    assert len(seen) == 20
    assert all(o.label is None for o in seen)
    assert any("not sent" in o.error for o in seen)


def test_display_url_masks_credentials(L):
    assert L.display_url(None) == "api.openai.com"
    assert (
        L.display_url("https://user:pw@llm.example.com/v1")
        == "https://***@llm.example.com/v1"
    )
    labeler = L.OpenAILabeler(
        KEY, base_url="http://me:pw@127.0.0.1:9/v1", max_retries=0
    )
    assert "pw" not in repr(labeler)
    with pytest.raises(L.LabelError) as e:
        labeler.label([_jpeg("red")], "p")
    assert "pw" not in str(e.value) and "***@127.0.0.1" in str(e.value)


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------


def _option_names():
    """The names of ``core.labeling.OPTIONS``, read at collection time so
    that each option is a test case (``conftest.py`` imported ``core`` as
    ``curate_core``)."""
    return importlib.import_module("curate_core.labeling").OPTIONS.names()


def _bad_values(p):
    """Values that option ``p`` must refuse, from what its schema says: of
    another type, missing (unless optional), out of its bounds, not one of
    its choices, failing its check."""
    bad = [["a list"]]
    if not p.optional:
        bad.append(None)
    if p.type in (int, float):
        bad.append("1")
    if p.type is int:
        bad.append(1.5)
    if p.type is bool:
        bad.append(1)
    if p.min is not None:
        bad.append(p.min - 1)
    if p.max is not None:
        bad.append(p.max + 1)
    if p.choices is not None:
        bad.append("not-a-choice")
    if p.check is not None:
        tries = {str: [" ", "x"], int: [0, -1], float: [0.0, -1.0]}[p.type]
        failing = [v for v in tries if not p.check.test(v)]
        assert failing, f"no value here fails the check of '{p.name}'"
        bad.append(failing[0])
    return bad


@pytest.mark.parametrize("name", _option_names())
def test_every_option_is_validated_with_its_name(L, name):
    (p,) = [p for p in L.OPTIONS.params if p.name == name]
    assert p.help.strip()
    assert f"| `{name}` |" in L.OPTIONS.markdown_table()
    assert L.OPTIONS.validate({})[name] == p.default
    for value in _bad_values(p):
        with pytest.raises(ValueError, match=f"'{name}'"):
            L.OPTIONS.validate({name: value})


def test_options_refuse_an_unknown_name(L):
    with pytest.raises(ValueError, match="'colour'.*images_per_cluster"):
        L.OPTIONS.validate({"colour": "red"})
    opts = L.OPTIONS.validate({"timeout": 5, "base_url": ""})
    assert opts["timeout"] == 5.0 and opts["base_url"] is None
