"""Label audit: which stored labels are probably wrong, judged by the
labels around each sample in a clustering run's feature space.
"""

import logging
import math

import numpy as np

import fiftyone as fo
from fiftyone import ViewField as F

from ..core.label_audit import AUDITS, cluster_label_stats
from ..core.metrics import NOISE
from ..core.progress import report, span
from ..core.schema import ParamError
from ..data import InputError
from ._actions import action_fields, check_action, run_neighbors, store_action

__all__ = ["audit_labels"]

logger = logging.getLogger(__name__)

NAME = "audit_labels"


def audit_labels(
    samples,
    run_key,
    label_field,
    threshold=0.8,
    method="trust_vote",
    tag=None,
    progress=None,
    **params,
):
    """Audits the labels of a clustering run's samples.

    Each sample's label is compared with the labels of its nearest
    neighbours in the run's feature space and of its cluster (see
    :class:`core.label_audit.TrustVote`). Writes, owned by the run:

    - ``<run_key>_label_suspicion``: in [0, 1], how little the
      neighbourhood supports the stored label (``None`` for samples without
      a label);
    - ``<run_key>_label_suggestion``: the label the neighbourhood points to.

    Stores with the run, per cluster, the majority label, its share
    (purity), the label entropy, the counts per label and the number of
    suspects (samples whose suspicion is at least ``threshold``), and saves
    the view ``"<run_key> label suspects"`` (most suspicious first). A
    second call replaces the first one's fields, view and record.

    Args:
        samples: a dataset or view (the run's samples in it are audited)
        run_key: a clustering run
        label_field: a ``Classification`` field or a string field
        threshold (0.8): the suspicion at which a sample is a suspect, in
            (0, 1]
        method ("trust_vote"): an audit method of
            :data:`core.label_audit.AUDITS`
        tag (None): also tag the suspects with this tag
        progress (None): an optional ``progress(fraction, stage)``
        **params: the method's parameters (e.g. ``n_neighbors=20``)

    Returns:
        a dict: ``summary`` (readable lines), the fields, the saved view,
        the numbers of samples audited, without a label and suspect, and
        ``clusters`` (per-cluster statistics)

    Raises:
        InputError: before anything is written, for a missing or unsuitable
            label field, a single class, no labels, a threshold out of
            range, unknown parameters or a run with no samples in the view
    """
    auditor = _auditor(method, params, threshold)
    fields = action_fields(run_key, ("label_suspicion", "label_suggestion"))
    view_name = f"{run_key} label suspects"
    config = check_action(samples, run_key, NAME, fields.values(), [view_name])
    path = _label_path(samples, label_field)
    ids, clusters, knn = run_neighbors(
        samples,
        run_key,
        config,
        auditor.params_["n_neighbors"],
        span(progress, 0.0, 0.6, "neighbours"),
    )
    names, codes = _read_labels(samples, ids, path, label_field)
    report(progress, 0.65, "voting")
    auditor.fit(knn, codes, clusters)
    del knn
    # rounded as stored, so that the saved view counts what this counts
    suspicion = np.round(auditor.suspicion_.astype(float), 6)
    suspects = suspicion >= threshold
    stats = cluster_label_stats(codes, clusters, names, suspects)
    record = _record(
        method, auditor.params_, threshold, label_field, codes, suspects
    )
    record["clusters"] = {str(c): s for c, s in stats.items()}
    view = _suspects_view(samples, fields, threshold)
    record = store_action(
        samples,
        run_key,
        NAME,
        ids,
        _values(fields, suspicion, auditor.suggestion_, names),
        {
            fields["label_suspicion"]: fo.FloatField,
            fields["label_suggestion"]: fo.StringField,
        },
        record,
        views={view_name: view},
        progress=span(progress, 0.7, 0.98, "writing"),
    )
    if tag:
        view.tag_samples(tag)
    report(progress, 1.0, "done")
    return dict(record, run_key=run_key, summary=audit_summary(record))


def _values(fields, suspicion, suggestion, names):
    """The values written: suspicion (``None`` without a label) and the
    suggested label's name."""
    return {
        fields["label_suspicion"]: np.where(
            np.isnan(suspicion), None, suspicion
        ),
        fields["label_suggestion"]: [
            names[c] if c >= 0 else None for c in suggestion
        ],
    }


def _suspects_view(samples, fields, threshold):
    """The suspects, most suspicious first."""
    field = fields["label_suspicion"]
    return samples._dataset.match(F(field) >= threshold).sort_by(
        field, reverse=True
    )


def _auditor(method, params, threshold):
    """The audit method, its parameters checked; the threshold checked."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InputError(
            f"threshold must be a number in (0, 1], not {threshold!r}"
        )
    if not 0.0 < threshold <= 1.0 or math.isnan(threshold):
        raise InputError(
            f"threshold={threshold} is out of range: use a suspicion in "
            "(0, 1] (0.8 flags samples whose label gets under a fifth of "
            "their neighbourhood's vote)"
        )
    try:
        return AUDITS.get(method)(**params)
    except ParamError as e:
        raise InputError(str(e)) from None


def _label_path(samples, label_field):
    """The path of the label strings of ``label_field``: the field itself
    (a string field) or ``<field>.label`` (a ``Classification``)."""
    schema = samples._dataset.get_field_schema()
    field = schema.get(label_field) if isinstance(label_field, str) else None
    if field is None:
        have = [
            k
            for k, v in schema.items()
            if isinstance(v, fo.StringField) or _is_classification(v)
        ]
        raise InputError(
            f"Dataset '{samples._dataset.name}' has no field "
            f"{label_field!r}. Label fields: {', '.join(have) or 'none'}"
        )
    if isinstance(field, fo.StringField):
        return label_field
    if _is_classification(field):
        return f"{label_field}.label"
    raise InputError(
        f"Field '{label_field}' is a {type(field).__name__}"
        + (
            f" of {field.document_type.__name__}"
            if hasattr(field, "document_type")
            else ""
        )
        + "; audit_labels needs a Classification or a string field"
    )


def _is_classification(field):
    return isinstance(field, fo.EmbeddedDocumentField) and issubclass(
        field.document_type, fo.Classification
    )


def _read_labels(samples, ids, path, label_field):
    """The label of each sample of ``ids`` as an integer code (``-1``:
    none), and the label name of each code."""
    members = samples.select(ids)
    by_id = dict(zip(*members.values(["_id", path])))
    raw = [by_id.get(i) for i in ids]
    names = sorted({v for v in raw if isinstance(v, str) and v})
    if not names:
        raise InputError(
            f"None of the run's {len(ids):,} samples has a label in "
            f"'{label_field}'; nothing to audit"
        )
    if len(names) == 1:
        raise InputError(
            f"Every labelled sample in '{label_field}' has the label "
            f"'{names[0]}': an audit needs at least two classes"
        )
    code = {n: i for i, n in enumerate(names)}
    codes = np.array([code.get(v, NOISE) for v in raw], dtype=np.int64)
    missing = int((codes < 0).sum())
    if missing:
        logger.info(
            "%d of %d samples have no label in '%s': they get no suspicion",
            missing,
            len(ids),
            label_field,
        )
    return names, codes


def _record(method, params, threshold, label_field, codes, suspects):
    """The config and counts stored with the run."""
    return dict(
        config=dict(
            label_field=label_field,
            method=method,
            params=dict(params),
            threshold=threshold,
        ),
        n_samples=int(len(codes)),
        n_unlabelled=int((codes < 0).sum()),
        n_suspects=int(suspects.sum()),
    )


def audit_summary(record):
    """Readable lines about a stored label audit."""
    c = record["config"]
    lines = [
        f"Label audit of '{c['label_field']}' ({c['method']}, "
        + ", ".join(f"{k}={v}" for k, v in c["params"].items())
        + f"): {record['n_suspects']:,} suspects of "
        f"{record['n_samples']:,} samples at suspicion >= {c['threshold']}"
    ]
    if record["n_unlabelled"]:
        lines.append(
            f"{record['n_unlabelled']:,} samples have no label and no "
            "suspicion"
        )
    impure = sorted(
        (
            (s["purity"], cid, s)
            for cid, s in record.get("clusters", {}).items()
            if s.get("purity") is not None and cid != str(NOISE)
        ),
    )[:3]
    if impure:
        lines.append(
            "Least pure clusters: "
            + "; ".join(
                f"{cid} ({s['majority_label']} {p:.0%})"
                for p, cid, s in impure
            )
        )
    lines.append(
        f"Fields: {', '.join(record['fields'])}; saved view "
        f"'{record['saved_views'][0]}'"
    )
    return lines
