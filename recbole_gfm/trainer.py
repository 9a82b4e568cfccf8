"""Trainers for what RecBole's Trainer cannot already do (found by name: ``<Model>Trainer``)."""
