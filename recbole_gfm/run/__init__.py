"""The run: data -> foundation -> model inputs -> model -> fit (with resume) -> evaluate -> record, one process or several."""
