"""The options of cluster labelling, as one schema.

:data:`OPTIONS` is the single description of what a labelling run can be
told: the API validates with it, the App form is built from it and the
README's table is generated from it.
"""

from ..schema import Check, Param, ParamSet

DEFAULT_MODEL = "gpt-4.1-mini"
DETAILS = ("low", "high", "auto")
SELECTIONS = ("representative", "random")


def _is_http_url(value):
    return value.startswith(("http://", "https://"))


def _is_named(value):
    return bool(value.strip())


def _is_positive(value):
    return value > 0


# In the order of the App form; the last two are not in the form
OPTIONS = ParamSet(
    "cluster labelling",
    (
        Param(
            "model",
            str,
            DEFAULT_MODEL,
            "A multimodal chat model.",
            check=Check("a model name, e.g. 'gpt-4.1-mini'", _is_named),
        ),
        Param(
            "base_url",
            str,
            None,
            "Any OpenAI-compatible server, e.g. http://localhost:8000/v1; "
            "empty uses OpenAI's.",
            optional=True,
            check=Check("an http(s) URL", _is_http_url),
        ),
        Param(
            "images_per_cluster",
            int,
            5,
            "How many images of each cluster are shown.",
            min=1,
            max=20,
        ),
        Param(
            "selection",
            str,
            "representative",
            "Which members are shown: representative (the most typical "
            "plus a few spread over the cluster) or random (drawn with the "
            "seed).",
            choices=SELECTIONS,
        ),
        Param(
            "seed",
            int,
            51,
            "Seed of the random choices.",
            min=0,
            max=2**32 - 1,
        ),
        Param(
            "context",
            str,
            None,
            "Optional words about the dataset added to the prompt, e.g. "
            "'camera-trap photos of wildlife'.",
            optional=True,
        ),
        Param(
            "max_clusters",
            int,
            None,
            "Label only this many of the largest clusters; empty labels "
            "all.",
            min=1,
            optional=True,
        ),
        Param(
            "overwrite",
            bool,
            False,
            "Send clusters that have a label again; off, only clusters "
            "without a label are sent, so an interrupted run resumes.",
        ),
        Param(
            "label_field",
            str,
            None,
            "Where labels go; empty: the cluster field's name with _label "
            "added (e.g. run1_cluster_label).",
            optional=True,
        ),
        Param(
            "detail",
            str,
            "low",
            "The image detail requested: thumbnails are at most 512 px, so "
            "'low' loses nothing and costs least.",
            choices=DETAILS,
        ),
        Param(
            "max_concurrency",
            int,
            8,
            "The most requests in flight at once.",
            min=1,
            max=64,
        ),
        Param(
            "timeout",
            float,
            60.0,
            "Seconds allowed per request.",
            max=3600.0,
            check=Check("> 0", _is_positive),
        ),
        Param(
            "max_retries",
            int,
            4,
            "Retries of a request that was rate limited, failed on the "
            "server's side, timed out or gave an unusable answer.",
            min=0,
            max=20,
        ),
        Param(
            "backoff_base",
            float,
            1.0,
            "The first retry delay in seconds, doubled at each retry unless "
            "the server sends Retry-After.",
            min=0.0,
            max=60.0,
        ),
    ),
)
