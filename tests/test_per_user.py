"""Per-user vectors survive the run record (JSON) and the .npz file unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recbole_gfm.run.per_user import load_per_user, per_user_record, save_per_user

PER_USER = {
    "users": np.array(["196", "u-2", "ünïcode"]),
    "metrics": {
        "hit@10": np.array([1, 0, 1], dtype=np.float32),
        "ndcg@10": np.array([0.63092977, 0.0, 1 / 3], dtype=np.float32),
    },
}


def test_file_round_trip_keeps_tokens_and_float32_values(tmp_path):
    path = tmp_path / "cell.per_user.npz"
    save_per_user(str(path), PER_USER)
    loaded = load_per_user(str(path))
    assert loaded["users"].tolist() == ["196", "u-2", "ünïcode"]
    assert set(loaded["metrics"]) == {"hit@10", "ndcg@10"}
    for key, values in PER_USER["metrics"].items():
        assert loaded["metrics"][key].dtype == np.float32 and np.array_equal(loaded["metrics"][key], values)
    assert [p.name for p in tmp_path.iterdir()] == ["cell.per_user.npz"]  # no temporary left behind


def test_record_form_is_json_and_round_trips_through_the_file(tmp_path):
    record = json.loads(json.dumps(per_user_record(PER_USER)))
    assert record["metrics"]["ndcg@10"][2] == 0.33333334  # float32's shortest repr, not 0.3333333432674408
    save_per_user(str(tmp_path / "f.npz"), record)
    loaded = load_per_user(str(tmp_path / "f.npz"))
    assert np.array_equal(loaded["metrics"]["ndcg@10"], PER_USER["metrics"]["ndcg@10"])
    assert per_user_record(None) is None


def test_misaligned_vectors_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'hit@10' has"):
        save_per_user(str(tmp_path / "bad.npz"), {"users": ["a", "b"], "metrics": {"hit@10": [1.0]}})
    assert not (tmp_path / "bad.npz").exists()
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a per-user file"):
        load_per_user(str(tmp_path / "other.npz"))
