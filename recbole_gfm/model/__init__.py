"""Models added by recbole-gfm: ``Name`` in module ``recbole_gfm.model.<name>``, found by name and
imported only when asked for (:func:`recbole_gfm.registry.get_model`)."""
