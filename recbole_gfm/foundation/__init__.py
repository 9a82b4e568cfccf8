"""The foundation stage: its trainer, and its artifact store (read and verified once per run)."""
