"""recbole-gfm: Graph Foundation Models for personalization, as a RecBole plugin."""

from recbole_gfm import compat

compat.apply()

__version__ = "0.1.0"
