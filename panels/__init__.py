"""The plugin's panels."""

from .explorer import ClusterExplorer

PANELS = [ClusterExplorer]
