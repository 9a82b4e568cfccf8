"""Text featurization: the bundled offline encoder, determinism, the fingerprinted on-disk cache."""

from __future__ import annotations

import os

import pytest
import torch

from recbole_gfm.data import text
from recbole_gfm.data.text import encode_texts, encoder_identity, item_text_embeddings

TITLES = ["Cast iron skillet, 12 inch", "Organic green tea, 100 bags", "Cast iron skillet, 12 inch"]


class FakeEncoder:
    """Stands in for a SentenceTransformer: a deterministic vector per text; records what it encoded."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size, show_progress_bar, convert_to_tensor, normalize_embeddings):
        self.calls.append(list(texts))
        vectors = torch.tensor([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts])
        return torch.nn.functional.normalize(vectors, dim=-1) if normalize_embeddings else vectors


@pytest.fixture
def fake_encoder(monkeypatch):
    encoder = FakeEncoder()
    monkeypatch.setattr(text, "load_text_encoder", lambda model, device: encoder)
    return encoder


def test_bundled_default_encodes_offline_and_deterministically():
    first = encode_texts(TITLES, show_progress=False)
    second = encode_texts(list(TITLES), show_progress=False)
    unbatched = encode_texts(TITLES, batch_size=1, show_progress=False)
    assert first.shape == (3, 384) and first.dtype == torch.float32
    assert torch.equal(first, second) and torch.equal(first[0], first[2])
    assert torch.allclose(first, unbatched, atol=1e-5)  # padding in a batch moves only the last bits
    assert torch.allclose(first.norm(dim=1), torch.ones(3), atol=1e-5)  # MiniLM ends with Normalize
    assert not torch.allclose(first[0], first[1])


def test_cache_hit_encodes_nothing(tmp_path, fake_encoder, monkeypatch):
    first = encode_texts(TITLES, cache_dir=str(tmp_path), show_progress=False)
    assert fake_encoder.calls == [sorted(set(TITLES))]  # each distinct text encoded once
    files = [f for f in os.listdir(tmp_path / "text_embeddings") if not f.endswith(".lock")]  # the lock stays
    assert len(files) == 1 and files[0].endswith(".safetensors")  # no temporary file left behind

    def no_encoder(model, device):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(text, "load_text_encoder", no_encoder)
    again = encode_texts(TITLES, cache_dir=str(tmp_path), show_progress=False)
    assert torch.equal(first, again)


def test_cache_key_covers_texts_and_normalisation(tmp_path, fake_encoder):
    encode_texts(TITLES, cache_dir=str(tmp_path), show_progress=False)
    encode_texts(TITLES[:2], cache_dir=str(tmp_path), show_progress=False)
    normalised = encode_texts(TITLES, cache_dir=str(tmp_path), normalize=True, show_progress=False)
    assert len(fake_encoder.calls) == 3 and len(list((tmp_path / "text_embeddings").glob("*.safetensors"))) == 3
    assert torch.allclose(normalised.norm(dim=1), torch.ones(3))


def test_encoder_identity(tmp_path):
    bundled = encoder_identity("all-MiniLM-L6-v2")
    assert bundled == encoder_identity("sentence-transformers/all-MiniLM-L6-v2") and "files_sha256" in bundled
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights v1")
    before = encoder_identity(str(folder))
    (folder / "model.safetensors").write_bytes(b"weights v2")
    assert encoder_identity(str(folder)) != before  # retrained weights, new cache key
    hub = encoder_identity("some-org/some-model-not-downloaded")
    assert hub == {"name": "some-org/some-model-not-downloaded", "revision": None}


class FakeDataset:
    def item_texts(self) -> list[str]:
        return ["", "Cast iron skillet", "", "Green tea"]


def test_item_text_embeddings(tmp_path, fake_encoder):
    config = {
        "text_encoder": "all-MiniLM-L6-v2",
        "text_batch_size": 2,
        "text_device": "cpu",
        "cache_dir": str(tmp_path),
        "show_progress": False,
        "text_show_progress": None,
    }
    embeddings = item_text_embeddings(config, FakeDataset())
    assert embeddings.shape == (4, 3)
    assert not embeddings[0].any() and not embeddings[2].any()  # padding and the item without text
    expected = encode_texts(["Cast iron skillet", "Green tea"], cache_dir=str(tmp_path), show_progress=False)
    assert torch.equal(embeddings[[1, 3]], expected)
