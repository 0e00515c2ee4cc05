"""The plugin's operators: thin App adapters over :mod:`..api`."""

from .clusters import OPERATORS as _CLUSTERS
from .curation import OPERATORS as _CURATION
from .embeddings import OPERATORS as _EMBEDDINGS
from .keep import OPERATORS as _KEEP
from .keeping import OPERATORS as _KEEPING
from .labeling import OPERATORS as _LABELING
from .projection import OPERATORS as _PROJECTION

OPERATORS = (
    _EMBEDDINGS
    + _CLUSTERS
    + _PROJECTION
    + _LABELING
    + _CURATION
    + _KEEP
    + _KEEPING
)
