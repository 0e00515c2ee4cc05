"""Label audit: how likely each sample's stored label is wrong, judged by
the labels of its nearest neighbours and of its cluster.

A plain vote of the nearest neighbours fails where annotators make
mistakes in bulk: when many images of one class carry the label of a
similar class, the wrongly labelled images vote for each other. The
:class:`TrustVote` weighs each neighbour by how well its own label is
supported by its neighbours, and iterates, so that a group of wrong labels
inside a region of another class loses its say round by round.

Labels come as integer codes (``-1``: no label); neighbours as the
``(indices, distances)`` of :func:`.neighbors.knn_graph` (each row's first
neighbour is itself); clusters as integer codes (``-1``: noise).
"""

import numpy as np

from .schema import Param, ParamError, Registry

AUDITS = Registry("label audit method")

# Rows per chunk of the vote (a chunk holds rows x k x k booleans)
_CHUNK = 16384


class LabelAudit:
    """A label audit method: ``fit(knn, labels, clusters)`` sets
    ``suspicion_`` (in [0, 1], ``nan`` for samples without a label) and
    ``suggestion_`` (the label code the neighbourhood points to, ``-1``
    where there is none)."""

    name = None
    label = None
    description = None

    def fit(self, knn, labels, clusters):
        raise NotImplementedError


@AUDITS.register
class TrustVote(LabelAudit):
    """Neighbours vote for their labels, each vote weighted by how well the
    voter's own label is supported (its trust), iterated; the sample's
    cluster adds a trust-weighted vote of its members.

    Its parameters (``params``): ``n_neighbors`` (neighbours that vote,
    the sample itself excluded), ``iterations`` (rounds of trust updates;
    0 is a plain vote) and ``cluster_weight`` (the share of the cluster's
    vote; noise samples use neighbours only).
    """

    name = "trust_vote"
    label = "Trust-weighted neighbour vote"
    description = (
        "Nearest neighbours and the cluster vote for labels, each voter "
        "weighted by how well its own label is supported, iterated"
    )
    params = (
        Param("n_neighbors", int, 20, "Neighbours that vote.", min=1, max=200),
        Param(
            "iterations",
            int,
            8,
            "Rounds in which votes are re-weighted by trust (0: a plain "
            "vote).",
            min=0,
            max=50,
        ),
        Param(
            "cluster_weight",
            float,
            0.2,
            "Share of the cluster's vote in a label's support.",
            min=0.0,
            max=1.0,
        ),
    )

    def __init__(self, **params):
        self.params_ = AUDITS.resolve(self.name, params)

    def fit(self, knn, labels, clusters):
        """Scores every sample; see the class docstring.

        Args:
            knn: ``(indices, distances)``, ``n x (k + 1)``, self first
            labels: ``n`` integer label codes, ``-1`` for none
            clusters: ``n`` integer cluster codes, ``-1`` for noise

        Returns:
            self
        """
        self._check(knn, labels)
        p = self.params_
        I = knn[0][:, 1 : p["n_neighbors"] + 1]
        near = _closeness(knn[1][:, 1 : p["n_neighbors"] + 1])
        labels = np.asarray(labels, dtype=np.int64)
        clusters = np.asarray(clusters, dtype=np.int64)
        has = labels >= 0
        trust = has.astype(np.float32)
        for _ in range(p["iterations"] + 1):
            own, best, best_label = _support(
                I, near, labels, clusters, trust, p["cluster_weight"]
            )
            trust = np.where(has, own, 0.0).astype(np.float32)
        self.support_ = np.where(has, own, np.nan)
        self.suspicion_ = 1.0 - self.support_
        self.suggestion_ = np.where(best > own, best_label, labels)
        self.suggestion_support_ = np.maximum(best, own)
        return self

    def _check(self, knn, labels):
        if knn[0].shape[1] < 2:
            raise ParamError("The audit needs at least one neighbour")
        if len(knn[0]) != len(labels):
            raise ParamError("One row of neighbours per label is needed")


def _closeness(D):
    """Weights of neighbours at distances ``D`` (rows ascending): a
    Gaussian of the distance in units of the row's farthest neighbour."""
    scale = np.maximum(D[:, -1:], 1e-12)
    return np.exp(-((D / scale) ** 2)).astype(np.float32)


def _support(I, near, labels, clusters, trust, cluster_weight):
    """One round of the vote: for every sample, the support of its own
    label, and the best-supported other label with its support (both in
    [0, 1]; ``-1`` and 0 where no other label has a vote)."""
    n = len(labels)
    cluster_share = _cluster_shares(labels, clusters, trust)
    own = np.zeros(n, dtype=np.float32)
    best = np.zeros(n, dtype=np.float32)
    best_label = np.full(n, -1, dtype=np.int64)
    for s in range(0, n, _CHUNK):
        rows = slice(s, min(n, s + _CHUNK))
        # candidates: the neighbours' labels, the sample's own label
        cand = np.concatenate([labels[I[rows]], labels[rows, None]], axis=1)
        votes = _neighbour_votes(I[rows], near[rows], labels, trust, cand)
        weight = np.where(clusters[rows] >= 0, cluster_weight, 0.0)
        from_cluster = cluster_share(clusters[rows, None], cand)
        score = (1 - weight[:, None]) * votes + weight[:, None] * from_cluster
        score[cand < 0] = 0.0
        own[rows] = score[:, -1]
        score[cand == labels[rows, None]] = -1.0
        at = score.argmax(axis=1)
        pick = np.arange(len(at))
        best[rows] = np.maximum(score[pick, at], 0.0)
        best_label[rows] = np.where(score[pick, at] > 0, cand[pick, at], -1)
    return own, best, best_label


def _neighbour_votes(I, near, labels, trust, cand):
    """The share of the neighbours ``I`` that vote for each candidate label
    of ``cand`` (rows x candidates), each weighted by its closeness
    ``near`` and trust."""
    voter_labels = labels[I]
    w = trust[I] * near
    total = w.sum(axis=1, keepdims=True)
    same = cand[:, :, None] == voter_labels[:, None, :]
    votes = (same * w[:, None, :]).sum(axis=2)
    return votes / np.maximum(total, 1e-12)


def _cluster_shares(labels, clusters, trust):
    """A function ``(cluster codes, label codes) -> share`` of the
    trust-weighted labelled members of each cluster that carry each label.
    """
    n_labels = int(labels.max()) + 1 if len(labels) else 0
    keep = (labels >= 0) & (clusters >= 0)
    c, lab, w = clusters[keep], labels[keep], trust[keep]
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    if n_labels == 0 or n_clusters == 0:
        return lambda cl, la: np.zeros(np.broadcast(cl, la).shape)
    from scipy import sparse

    table = sparse.csr_matrix(
        (w.astype(np.float64), (c, lab)), shape=(n_clusters, n_labels)
    )
    totals = np.asarray(table.sum(axis=1)).ravel()

    def share(cl, la):
        cl, la = np.broadcast_arrays(cl, la)
        ok = (cl >= 0) & (la >= 0)
        out = np.zeros(cl.shape, dtype=np.float64)
        if ok.any():
            got = np.asarray(table[cl[ok], la[ok]]).ravel()
            out[ok] = got / np.maximum(totals[cl[ok]], 1e-12)
        return out

    return share


def cluster_label_stats(labels, clusters, names, suspects):
    """Per cluster: the majority label, its share (purity), the label
    entropy (in nats), the count per label and the number of suspects.

    Args:
        labels: integer label codes (``-1``: none)
        clusters: integer cluster codes (``-1``: noise)
        names: the label name of each code
        suspects: a boolean mask of the suspect samples

    Returns:
        ``{cluster code: dict}``
    """
    out = {}
    for c in np.unique(clusters):
        members = clusters == c
        lab = labels[members & (labels >= 0)]
        counts = np.bincount(lab, minlength=len(names)) if len(lab) else []
        nonzero = {names[i]: int(k) for i, k in enumerate(counts) if k}
        p = np.array(sorted(nonzero.values(), reverse=True), dtype=float)
        p = p / p.sum() if len(p) else p
        top = max(nonzero, key=nonzero.get) if nonzero else None
        out[int(c)] = dict(
            majority_label=top,
            purity=float(p[0]) if len(p) else None,
            entropy=float(-(p * np.log(p)).sum()) if len(p) else None,
            counts=dict(sorted(nonzero.items(), key=lambda kv: -kv[1])),
            labelled=int(len(lab)),
            suspects=int((suspects & members).sum()),
        )
    return out
