"""The benchmark: files, child processes, cells and trials, searches, boards of record, reports."""
