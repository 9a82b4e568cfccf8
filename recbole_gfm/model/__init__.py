"""Models added by recbole-gfm (found by name by recbole_gfm.config.get_model)."""

from recbole_gfm.model.gfm import GFM
from recbole_gfm.model.hgnn import HGNN
from recbole_gfm.model.llmknn import LLMKNN
from recbole_gfm.model.propagation import Propagation

__all__ = ["GFM", "HGNN", "LLMKNN", "Propagation"]
