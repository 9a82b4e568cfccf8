"""Models added by recbole-gfm."""
