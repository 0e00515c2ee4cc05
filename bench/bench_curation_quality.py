"""Quality of the label audit and the outlier scores on the sklearn digits
(standardised pixel vectors), against the baselines a curator would use
otherwise: a plain vote of the 20 nearest neighbours, scikit-learn's
LocalOutlierFactor (20 neighbours) and IsolationForest, on the same vectors.
No database: ``core`` on arrays, as the API calls it for a run that
L2-normalises (features: PCA to at most 64 dimensions; k-means, k=10).

Usage::

    python bench/bench_curation_quality.py
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.preprocessing import StandardScaler, normalize

import benchlib

SEEDS = (51, 52, 53)


neighbors, label_audit, outliers = benchlib.core(
    "neighbors", "label_audit", "outliers"
)


def space(Z):
    F = neighbors.prepare_features(Z, "cosine", n_components=64)
    knn = neighbors.knn_graph(F, 21)
    clusters = KMeans(10, n_init=3, random_state=0).fit_predict(F)
    return knn, clusters


def plain_vote(V, labels):
    I = NearestNeighbors(n_neighbors=21).fit(V).kneighbors(V)[1][:, 1:]
    return 1.0 - (labels[I] == labels[:, None]).mean(axis=1)


def found(scores, flipped):
    top = np.argsort(-scores, kind="stable")[: flipped.sum()]
    return flipped[top].mean()


def audit_table(Z, y):
    knn, clusters = space(Z)
    print(
        "| noise | seed | ours: top-m | plain vote, L2-normalised | plain vote, raw | ours: AUROC |"
    )
    print("|---|---|---|---|---|---|")
    for rate in (0.05, 0.2):
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(y), int(rate * len(y)), replace=False)
            noisy = y.copy()
            noisy[idx] = (y[idx] + rng.integers(1, 10, len(idx))) % 10
            fl = noisy != y
            s = label_audit.TrustVote().fit(knn, noisy, clusters).suspicion_
            print(
                f"| {rate:.0%} uniform | {seed} | {found(s, fl):.3f} | "
                f"{found(plain_vote(normalize(Z), noisy), fl):.3f} | "
                f"{found(plain_vote(Z, noisy), fl):.3f} | "
                f"{roc_auc_score(fl, s):.4f} |"
            )
    for true, given in ((3, 8), (4, 9), (7, 1), (9, 5), (1, 7), (5, 9)):
        rng = np.random.default_rng(51)
        of_true = np.flatnonzero(y == true)
        idx = rng.choice(of_true, int(0.3 * len(of_true)), replace=False)
        noisy = y.copy()
        noisy[idx] = given
        fl = noisy != y
        s = label_audit.TrustVote().fit(knn, noisy, clusters).suspicion_
        print(
            f"| 30% of {true} as {given} | 51 | {found(s, fl):.3f} | "
            f"{found(plain_vote(normalize(Z), noisy), fl):.3f} | "
            f"{found(plain_vote(Z, noisy), fl):.3f} | "
            f"{roc_auc_score(fl, s):.4f} |"
        )
    s = label_audit.TrustVote().fit(knn, y, clusters).suspicion_
    print(
        f"\nClean labels: {(s >= 0.8).mean():.2%} of digits at suspicion >= 0.8"
    )


def outlier_table(raw):
    print(
        "\n| seed | ours (relative_distance) | knn_distance | local_ratio | LOF, same vectors | IsolationForest, same vectors | LOF, raw | IsolationForest, raw |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        n = len(raw)
        idx = rng.choice(n, int(0.02 * n), replace=False)
        used = raw.std(axis=0) > 2.0
        X = raw.copy()
        X[idx] = np.clip(
            X[idx] + rng.normal(0, 6, (len(idx), 64)) * used, 0, 16
        )
        planted = np.zeros(n, bool)
        planted[idx] = True
        Z = StandardScaler().fit_transform(X).astype(np.float32)
        knn, _ = space(Z)
        auc = lambda s: f"{roc_auc_score(planted, s):.4f}"
        ours = [
            auc(outliers.OUTLIER_SCORES.get(m)().fit(knn).scores_)
            for m in ("relative_distance", "knn_distance", "local_ratio")
        ]
        V = normalize(Z)
        lof = lambda A: -LocalOutlierFactor(20).fit(A).negative_outlier_factor_
        iso = (
            lambda A: -IsolationForest(random_state=0).fit(A).score_samples(A)
        )
        print(
            f"| {seed} | "
            + " | ".join(ours)
            + " | "
            + " | ".join(auc(f(A)) for A in (V,) for f in (lof, iso))
            + " | "
            + " | ".join(auc(f(Z)) for f in (lof, iso))
            + " |"
        )


def main():
    d = load_digits()
    raw = d.data.astype(np.float32)
    Z = StandardScaler().fit_transform(raw).astype(np.float32)
    audit_table(Z, d.target)
    outlier_table(raw)


if __name__ == "__main__":
    main()
