"""Multi-type item data: datasets, converters, text featurization, the co-interaction graph."""

from recbole_gfm.data.dataset import DataError, MultiTypeDataset

__all__ = ["DataError", "MultiTypeDataset"]
