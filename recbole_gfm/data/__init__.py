"""Multi-type item data: datasets, converters, text featurization, the co-interaction graph."""
