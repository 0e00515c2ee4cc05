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
-   :mod:`.labels`: cluster names from a multimodal LLM
-   :mod:`.edits`: the cluster table and edits by hand (rename, tag, merge)
-   :mod:`.projections`: 2-D projections for the App's Embeddings panel
-   :mod:`.label_audit`: which labels are probably wrong
-   :mod:`.outliers`: which samples do not belong
-   :mod:`.duplicates`: near-duplicate groups (a run of their own) and the
    threshold preview
-   :mod:`.subsets`: balanced subsets of a clustering run
"""

from ..core.schema import ParamError
from ..data import InputError
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
    "audit_labels",
    "check_new_brain_key",
    "cluster_view",
    "compute_clusters",
    "compute_embeddings",
    "compute_outliers",
    "compute_projection",
    "delete_clustering_run",
    "delete_duplicates_run",
    "duplicate_groups_view",
    "duplicate_threshold_preview",
    "duplicates_per_cluster",
    "find_duplicates",
    "get_duplicates_run_info",
    "list_duplicates_runs",
    "rename_duplicates_run",
    "select_subset",
    "estimate_label_clusters",
    "flagged_view",
    "get_cluster_table",
    "get_clustering_run_info",
    "label_clusters",
    "list_clustering_runs",
    "list_projections",
    "load_clustering_results",
    "merge_clusters",
    "plan_clustering",
    "rename_cluster",
    "rename_clustering_run",
    "repair_interrupted_runs",
    "save_projection",
    "tag_cluster",
    "top_cluster_values",
]
