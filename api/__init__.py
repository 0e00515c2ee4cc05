"""The plugin's public Python API over FiftyOne collections.

Each function here is what the matching operator calls, and what a notebook
user can call directly::

    import fiftyone.operators as foo

    foo.get_operator("@curate/clustering/compute_clusters")  # loads it
    from fiftyone.plugins.orgs.curate.clustering import api

    api.compute_clusters(dataset, "run1", "clip", method="kmeans")

Functions read what they need from the database in bulk, hand numpy arrays
to :mod:`..core`, and store results through :mod:`..runs`; nothing is
written before the computation has succeeded. One module per capability:

-   :mod:`.clustering`: clustering runs (compute, inspect, rename, delete)
-   :mod:`.embeddings`: embeddings into sample fields
-   :mod:`.shards`: embeddings over several delegated workers
-   :mod:`.labels`: cluster names from a multimodal LLM
-   :mod:`.edits`: the cluster table and edits by hand (rename, tag, merge)
-   :mod:`.projections`: 2-D projections for the App's Embeddings panel
-   :mod:`.label_audit`: which labels are probably wrong
-   :mod:`.outliers`: which samples do not belong
-   :mod:`.assign`: new samples into an existing run's clusters
-   :mod:`.compare`: two runs compared (ARI, AMI, per-cluster verdicts)
-   :mod:`.duplicates`: near-duplicate groups (a run of their own) and the
    threshold preview
-   :mod:`.subsets`: balanced subsets of a clustering run
"""

from ..core.schema import ParamError
from ..data import InputError
from .assign import assign_clusters, assigned_view
from .clustering import (
    compute_clusters,
    delete_clustering_run,
    get_clustering_run_info,
    list_clustering_runs,
    load_clustering_results,
    plan_clustering,
    rename_clustering_run,
    repair_interrupted_runs,
)
from .compare import compare_clustering_runs, moved_out, moved_samples
from .edits import (
    cluster_view,
    get_cluster_table,
    merge_clusters,
    rename_cluster,
    tag_cluster,
)
from .duplicates import (
    delete_duplicates_run,
    duplicate_groups_view,
    duplicate_threshold_preview,
    duplicates_per_cluster,
    find_duplicates,
    get_duplicates_run_info,
    list_duplicates_runs,
    rename_duplicates_run,
)
from .embeddings import compute_embeddings
from ._actions import flagged_view
from .label_audit import audit_labels
from .labels import estimate_label_clusters, label_clusters
from .outliers import compute_outliers
from .shards import (
    SHARD_EVERY,
    cancel_embedding_shards,
    check_no_pending_shards,
    default_shards,
    embedding_shards_status,
    plan_embedding_shards,
    record_shard_operation,
    run_embedding_shard,
)
from .subsets import select_subset
from .projections import (
    check_new_brain_key,
    compute_projection,
    list_projections,
    save_projection,
    top_cluster_values,
)

__all__ = [
    "InputError",
    "ParamError",
    "SHARD_EVERY",
    "assign_clusters",
    "assigned_view",
    "audit_labels",
    "cancel_embedding_shards",
    "check_new_brain_key",
    "check_no_pending_shards",
    "cluster_view",
    "compare_clustering_runs",
    "compute_clusters",
    "compute_embeddings",
    "compute_outliers",
    "compute_projection",
    "default_shards",
    "delete_clustering_run",
    "delete_duplicates_run",
    "duplicate_groups_view",
    "duplicate_threshold_preview",
    "duplicates_per_cluster",
    "embedding_shards_status",
    "estimate_label_clusters",
    "find_duplicates",
    "flagged_view",
    "get_cluster_table",
    "get_clustering_run_info",
    "get_duplicates_run_info",
    "label_clusters",
    "list_clustering_runs",
    "list_duplicates_runs",
    "list_projections",
    "load_clustering_results",
    "merge_clusters",
    "moved_out",
    "moved_samples",
    "plan_clustering",
    "plan_embedding_shards",
    "record_shard_operation",
    "rename_cluster",
    "rename_clustering_run",
    "rename_duplicates_run",
    "repair_interrupted_runs",
    "run_embedding_shard",
    "save_projection",
    "select_subset",
    "tag_cluster",
    "top_cluster_values",
]
