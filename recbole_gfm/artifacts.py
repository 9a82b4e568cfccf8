"""Atomic files, fingerprints, version stamps and content hashes: what makes a result or a cache trustworthy.

Everything the plugin persists (results, caches, foundation embeddings) goes through
:func:`atomic_write`, so a crash never leaves a half-written file under a name a later run reads,
and is named by :func:`fingerprint` of what produced it, so a stale file is never mistaken for a
fresh one. One policy for every such key: the settings that can change a number
(:func:`settings_fingerprint`), the data, the code as parsed (:func:`code_fingerprint`) and the
versions of the packages whose numerics matter (:func:`package_versions`).

**Integrity.** Every file the plugin writes carries the sha256 of its content, checked before its
content is used; a failed check raises :class:`CorruptArtifactError` naming the file. Where the hash
lives, by kind of file:

- JSON (results, benchmark cells, search trials, the foundation's ``meta.json``): a ``sha256`` key
  over the rest of the mapping (:func:`write_json` / :func:`read_json`).
- safetensors (the text-embedding cache, the foundation's ``embeddings`` and ``encoder``): a
  ``sha256`` entry of the file's own header metadata, over the rest of the header and the tensor
  bytes (:func:`write_safetensors` / :func:`read_safetensors`), so a copied file stays checkable.
  The foundation's ``meta.json`` also lists these hashes (``files``), binding the folder together.
- checkpoints (``saved/<Model>-<time>.pth``): a sidecar ``<file>.sha256`` in ``sha256sum`` format,
  over the whole file (:func:`write_sidecar` / :func:`verify_sidecar`), checked before ``torch.load``
  unpickles a byte of it; ``sha256sum -c`` checks it too, and the ``.pth`` stays a plain torch file.
- per-user vectors (``.npz``): a ``sha256`` member over the other members
  (:mod:`recbole_gfm.run.per_user`).

What a failed check leads to is the reader's choice: a cache (text embeddings, foundation artifact)
is named in one warning and rebuilt; a result or checkpoint is an error saying what to do.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from logging import getLogger
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


class LockedError(RuntimeError):
    """Another live process holds the lock :func:`exclusive` was asked not to wait for."""

    def __init__(self, path: str, owner: str):
        self.path, self.owner = path, owner
        super().__init__(f"{path}: held by another process (pid {owner})")


@contextmanager
def exclusive(path: str, wait: bool = True) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``path`` (``fcntl.flock``, holding this pid) for the block.

    The one lock of the package. Processes that share a cache (a benchmark's parallel cells, two
    users) and need the same artifact take turns (``wait``): the first makes it, the others wait,
    then find it made. With ``wait=False`` a held lock raises :class:`LockedError` naming the
    holder's pid (one run of a board at a time). The kernel releases the lock of a process that
    dies, so a crash never leaves the others waiting.
    """
    folder, name = os.path.split(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except FileNotFoundError:  # a symbolic link on the way points nowhere
        raise FileNotFoundError(
            f"{folder}: cannot create this folder: a symbolic link on its path points to a folder that does not exist. "
            "Create the link's target, or replace the link by a folder."
        ) from None
    fd = os.open(os.path.join(folder, f".{name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)  # kept: removing it would race
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if not wait:
                raise LockedError(path, owner) from None
            getLogger().info(f"{path}: another process (pid {owner}) is making it; waiting for that process")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class CorruptArtifactError(ValueError):
    """A file we wrote fails its integrity check (truncated, overwritten, edited)."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem
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


def file_sha256(path: str) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


SIDECAR_SUFFIX = ".sha256"


def write_sidecar(path: str, digest: str) -> None:
    """Write ``<path>.sha256`` in ``sha256sum``'s format (``<hex>  <file name>``), atomically."""
    with atomic_write(path + SIDECAR_SUFFIX, "w") as f:
        f.write(f"{digest}  {os.path.basename(path)}\n")


def verify_sidecar(path: str, advice: str) -> None:
    """Check ``path`` against its ``<path>.sha256``; :class:`CorruptArtifactError` ending in ``advice`` if not."""
    sidecar = path + SIDECAR_SUFFIX
    if not os.path.isfile(sidecar):
        raise CorruptArtifactError(
            path, f"no {os.path.basename(sidecar)} beside it, so it cannot be checked: written by something else or "
            f"before recbole-gfm hashed it, or its hash file was lost. {advice}"
        )  # fmt: skip
    with open(sidecar, encoding="utf-8", errors="replace") as f:
        expected = f.read().split(maxsplit=1)[:1]
    if not expected or len(expected[0]) != 64:
        raise CorruptArtifactError(path, f"its hash file {sidecar} is damaged (no sha256 in it). {advice}")
    if file_sha256(path) != expected[0].lower():
        raise CorruptArtifactError(path, f"its content does not match {sidecar}: the file was changed or damaged. {advice}")


def _safetensors_digest(path: str, blob: bytes) -> tuple[str, dict[str, str]]:
    """(sha256 of the file without its hash entry, its header metadata).

    The header is read by hand (8-byte little-endian length, then JSON: the format's spec) because
    safetensors has no call that returns a header from bytes without also loading the tensors.
    """
    size = int.from_bytes(blob[:8], "little")
    try:
        header = json.loads(blob[8 : 8 + size])
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptArtifactError(path, f"not a safetensors file ({e}): the file is truncated or damaged") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise CorruptArtifactError(path, "not a safetensors file (its header is not a mapping): the file is damaged")
    metadata = dict(header.get("__metadata__") or {})
    header["__metadata__"] = {k: v for k, v in metadata.items() if k != INTEGRITY_KEY}
    return content_hash(_canonical(header) + blob[8 + size :]), metadata


def write_safetensors(path: str, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> str:
    """Write torch ``tensors`` as safetensors, atomically, its sha256 in its own metadata; return the hash."""
    from safetensors.torch import save

    # never empty: safetensors 0.x writes a malformed header for no tensors and empty metadata
    metadata = {"format": "pt", **(metadata or {})}
    digest, _ = _safetensors_digest(path, save(tensors, metadata=metadata))
    with atomic_write(path) as f:
        f.write(save(tensors, metadata={**metadata, INTEGRITY_KEY: digest}))
    return digest


def read_safetensors(path: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, metadata) of a file :func:`write_safetensors` wrote, its hash checked before it is loaded.

    Raises :class:`CorruptArtifactError` naming the file when it is truncated, changed or has no hash.
    """
    from safetensors.torch import load

    with open(path, "rb") as f:
        blob = f.read()
    digest, metadata = _safetensors_digest(path, blob)
    if INTEGRITY_KEY not in metadata:
        raise CorruptArtifactError(path, f"no '{INTEGRITY_KEY}' content hash: not a file recbole-gfm wrote, or damaged")
    if digest != metadata[INTEGRITY_KEY]:
        raise CorruptArtifactError(path, "its content does not match its sha256 hash: the file was changed or damaged")
    return load(blob), metadata


def move_aside(path: str) -> str:
    """Rename a damaged file or folder to ``<path>.corrupt-<time>`` (kept for inspection, never read
    again); return the new name. The one policy for a file that fails its check."""
    aside = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}"
    os.rename(path, aside)
    return aside


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
    "save_dataset", "dataset_save_path", "save_dataloaders", "dataloaders_save_path", "config_files", "text_show_progress",
    "resume_training",
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


# Code that schedules, presents or serves results: it cannot change a number, so a result's key
# leaves it out (editing the leaderboard's layout re-runs no cell). Files, or folders ending in /.
PRESENTATION_CODE = ("bench/", "cli.py", "inference.py")


def _presentation(relative: str) -> bool:
    return any(relative == p or (p.endswith("/") and relative.startswith(p)) for p in PRESENTATION_CODE)


def result_code_fingerprint(length: int = 16) -> str:
    """:func:`code_fingerprint` of the whole package but :data:`PRESENTATION_CODE`."""
    files = sorted(
        os.path.relpath(os.path.join(root, name), PACKAGE_DIR)
        for root, _, names in os.walk(PACKAGE_DIR)
        for name in names
        if name.endswith(".py")
    )
    return code_fingerprint(*(f for f in files if not _presentation(f)), length=length)


def module_file(module: str) -> str | None:
    """The file of a ``recbole_gfm`` module, relative to the package (None if there is none now)."""
    parts = module.split(".")[1:]
    candidates = [os.path.join(*parts, "__init__.py"), os.path.join(*parts) + ".py"] if parts else ["__init__.py"]
    return next((c for c in candidates if os.path.isfile(os.path.join(PACKAGE_DIR, c))), None)


def loaded_result_modules() -> list[str]:
    """The ``recbole_gfm`` modules this process has imported that can change a number (not presentation)."""
    return sorted(
        name for name in sys.modules
        if (name == "recbole_gfm" or name.startswith("recbole_gfm.")) and (f := module_file(name)) and not _presentation(f)
    )  # fmt: skip


def module_fingerprints(modules: Iterable[str]) -> dict[str, str | None]:
    """:func:`code_fingerprint` of each module's file as it is now; None for a module that no longer exists."""
    return {name: (code_fingerprint(f) if (f := module_file(name)) else None) for name in modules}


def machine() -> dict[str, Any]:
    """What a result was measured on: CPU model, cores this process may use, memory, OS."""
    cpu = platform.processor() or "?"
    memory_gb = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
        with open("/proc/meminfo") as f:
            memory_gb = round(int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "memory_gb": memory_gb, "os": platform.platform()}


def git_state(path: str = PACKAGE_DIR) -> dict[str, Any]:
    """The commit of the checkout holding ``path``, and whether its tracked files differ from it.

    ``{"commit": None}`` outside a git checkout (an installed wheel): a result then names its
    package version only.
    """
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", path, *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))}


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide a result."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
