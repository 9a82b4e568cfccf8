"""Atomic files, fingerprints and version stamps: what makes a result or a cache trustworthy.

Everything the plugin persists (results, caches, foundation embeddings) goes through
:func:`atomic_write`, so a crash never leaves a half-written file under a name a later run reads,
and is named by :func:`fingerprint` of what produced it, so a stale file is never mistaken for a
fresh one. One policy for every such key: the settings that can change a number
(:func:`settings_fingerprint`), the data, the code as parsed (:func:`code_fingerprint`) and the
versions of the packages whose numerics matter (:func:`package_versions`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import tempfile
from contextlib import contextmanager
from importlib import metadata
from typing import Any, Iterable, Iterator

_VERSIONED = [
    "recbole-gfm",
    "recbole",
    "torch",
    "torch-geometric",
    "sentence-transformers",
    "numpy",
    "scipy",
    "pandas",
]


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask can only swap it)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration):
        umask = os.umask(0o022)
        os.umask(umask)
        return umask


@contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.

    The file gets the permissions a plain ``open`` would give it (0666 less the umask), not
    mkstemp's private 0600.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class CorruptArtifactError(ValueError):
    """A file we wrote fails its integrity check (truncated, overwritten, edited)."""

    def __init__(self, path: str, problem: str):
        self.path = path
        super().__init__(f"{path}: {problem}")


INTEGRITY_KEY = "sha256"  # the content hash every JSON file we write carries


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write the mapping ``data`` as indented JSON, atomically, with its content hash (``sha256``)."""
    data = json.loads(_canonical(data))  # what a reader will see (defaults applied, keys as strings)
    with atomic_write(path, "w") as f:
        json.dump({**data, INTEGRITY_KEY: content_hash(_canonical(data))}, f, indent=2, sort_keys=True)


def read_json(path: str) -> dict[str, Any]:
    """A JSON mapping written by :func:`write_json`, its content hash checked.

    Raises :class:`CorruptArtifactError` naming the file when it is not valid JSON (e.g. truncated),
    has no hash or does not match it.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptArtifactError(path, f"not valid JSON ({e}); the file is truncated or damaged") from None
    if not isinstance(data, dict) or INTEGRITY_KEY not in data:
        raise CorruptArtifactError(path, f"no '{INTEGRITY_KEY}' content hash: not a file recbole-gfm wrote, or damaged")
    expected = data.pop(INTEGRITY_KEY)
    if content_hash(_canonical(data)) != expected:
        raise CorruptArtifactError(path, "its content does not match its sha256 hash: the file was changed or damaged")
    return data


def fingerprint(*parts: Any, length: int = 16) -> str:
    """A short stable hash of JSON-serialisable parts (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_fingerprint(*paths: str, length: int = 16) -> str:
    """Hash of the bytes of the given files (order matters)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:length]


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# Settings that decide where output goes, how much is printed or how fast it runs, never a number:
# every other key of a resolved config is part of the fingerprint of what the config produces.
NOT_FINGERPRINTED = frozenset({
    "state", "show_progress", "results_dir", "checkpoint_dir", "data_path", "cache_dir", "log_wandb",
    "wandb_project", "eval_batch_size", "worker", "ip", "port", "offset", "benchmark_filename_dir",
    "save_dataset", "dataset_save_path", "save_dataloaders", "dataloaders_save_path", "config_files",
})  # fmt: skip


def settings_fingerprint(resolved: dict[str, Any], also_ignore: Iterable[str] = ()) -> dict[str, Any]:
    """The part of a resolved (plain) config that can change a number: all but :data:`NOT_FINGERPRINTED`."""
    ignored = NOT_FINGERPRINTED | set(also_ignore)
    return {k: v for k, v in resolved.items() if k not in ignored}


_LOG_CALLS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "print", "set_postfix_str"}


class _CodeOnly(ast.NodeTransformer):
    """Drops docstrings and statements that only log or print: what cannot change a number."""

    def _body(self, node):
        self.generic_visit(node)
        body = [s for s in node.body if not _is_docstring(s) and not _is_log_call(s)]
        node.body = body or [ast.Pass()]
        return node

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _body


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)


def _is_log_call(statement: ast.stmt) -> bool:
    if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)):
        return False
    func = statement.value.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in _LOG_CALLS


def code_fingerprint(*paths: str, length: int = 16) -> str:
    """Hash of the code at ``paths`` (files or folders, relative to this package), as Python parses it.

    Comments, docstrings and logging / print statements are left out, so editing them invalidates no
    artifact; any other change of the code does. Part of every artifact's and result's fingerprint.
    """
    digest = hashlib.sha256()
    for path in paths:
        full = os.path.join(PACKAGE_DIR, path)
        files = (
            sorted(os.path.join(root, f) for root, _, names in os.walk(full) for f in names if f.endswith(".py"))
            if os.path.isdir(full)
            else [full]
        )
        for file in files:
            with open(file, "rb") as f:
                tree = _CodeOnly().visit(ast.parse(f.read(), filename=file))
            digest.update(os.path.relpath(file, PACKAGE_DIR).encode() + b"\0")
            digest.update(ast.dump(tree, include_attributes=False).encode())
    return digest.hexdigest()[:length]


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide a result."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
