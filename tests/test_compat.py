"""Each fix in recbole_gfm.compat is applied here and does what RecBole needs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbole_gfm import checkpoint, compat


def test_every_fix_this_stack_needs_is_applied():
    # the stack pinned in requirements/constraints.txt: numpy 2, scipy >= 1.12, torch >= 2.6
    assert compat.APPLIED == [
        "numpy2-aliases",
        "scipy-dok-update",
        "sine-anomaly-detection-off",
        "torch-weights-only-checkpoint",
        "checkpoint-sha256",
        "distributed-backend-by-device",
        "distributed-trainer",
        "distributed-evaluation-exact",
        "loader-scored-rows",
        "pop-counts-train-interactions",
    ]


def test_importing_every_recbole_model_leaves_anomaly_detection_off():
    from recbole_gfm.registry import recbole_models

    assert "SINE" in recbole_models()  # sine.py, which switches it on at import, is loaded
    assert not torch.is_anomaly_enabled()


def test_numpy_aliases_let_recbole_config_and_metrics_run():
    from recbole.config import Config
    from recbole.evaluator.metrics import NDCG

    config = Config(model="BPR", dataset="ml-100k", config_dict={"topk": [2], "metric_decimal_place": 4})
    assert np.float is np.float64 and np.bool is np.bool_ and np.long is np.int_
    # NDCG.metric_info uses np.float: one user, relevant items at ranks 1 and 3
    pos_index = np.array([[True, False, True]])
    ndcg = NDCG(config).metric_info(pos_index, np.array([2]))
    assert np.allclose(ndcg[0], [1.0, 1.0 / (1 + 1 / np.log2(3)), (1 + 0.5) / (1 + 1 / np.log2(3))])


def test_dok_update_bulk_inserts_like_old_scipy():
    matrix = sp.dok_matrix((3, 3), dtype=np.float32)
    matrix._update({(0, 1): 1.0, (2, 0): 2.0})
    assert matrix.toarray().tolist() == [[0, 1, 0], [0, 0, 0], [2, 0, 0]]


def test_lightgcn_normalised_adjacency_is_symmetric_and_degree_normalised(ml100k_slice):
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN

    from conftest import quick_overrides
    from recbole_gfm.config import Config

    config = Config("LightGCN", "ml-100k-slice", config_dict=quick_overrides(ml100k_slice))
    train, _, _ = data_preparation(config, create_dataset(config))
    model = LightGCN(config, train._dataset)
    adj = model.norm_adj_matrix.to_dense()
    assert torch.allclose(adj, adj.T)
    inter = train._dataset.inter_matrix(form="csr")
    user_deg = np.asarray((inter > 0).sum(axis=1)).ravel()
    item_deg = np.asarray((inter > 0).sum(axis=0)).ravel()
    u, i = inter.nonzero()
    expected = 1 / np.sqrt(user_deg[u] * item_deg[i])
    assert np.allclose(adj[u, model.n_users + i].numpy(), expected, rtol=1e-5)


def test_checkpoint_extras_round_trip_through_weights_only_load(tmp_path):
    extras = {"pred_mat": sp.random(5, 4, density=0.5, format="csr", random_state=0), "sim": np.eye(3)}
    path = tmp_path / "ckpt.pth"
    torch.save({"other_parameter": checkpoint.encode_other_parameter(extras)}, path)
    loaded = checkpoint.decode_other_parameter(torch.load(path, weights_only=True)["other_parameter"])
    assert sp.issparse(loaded["pred_mat"]) and loaded["pred_mat"].format == "csr"
    assert (loaded["pred_mat"] != extras["pred_mat"]).nnz == 0
    assert np.array_equal(loaded["sim"], np.eye(3))


def test_to_plain_turns_numpy_scalars_and_enums_into_plain_data():
    from recbole.utils import InputType

    plain = checkpoint.to_plain({"score": np.float64(0.5), "type": InputType.PAIRWISE, "ks": (1, 2)})
    assert plain == {"score": 0.5, "type": "InputType.PAIRWISE", "ks": [1, 2]}
    assert type(plain["score"]) is float


class PairwisePop(__import__("recbole.model.general_recommender", fromlist=["Pop"]).Pop):
    """Pop fed by RecBole's pairwise loader (item_id + neg_item_id rows)."""

    input_type = __import__("recbole.utils", fromlist=["InputType"]).InputType.PAIRWISE


@pytest.mark.parametrize("model", ["Pop", PairwisePop])
def test_pop_counts_every_train_interaction_once_whatever_the_batch_size(model, ml100k_slice, workdir):
    """RecBole's Pop counted an item once per batch (and its sampled negatives): its counts
    depended on train_batch_size and seed. Now they are the train split's item counts."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from conftest import quick_overrides
    from recbole_gfm.config import Config
    from recbole_gfm.registry import get_trainer

    scores = []
    for batch_size in (64, 4096):
        config = Config(model, "ml-100k-slice", config_dict=quick_overrides(ml100k_slice, train_batch_size=batch_size))
        init_seed(config["seed"], True)  # the same split both times
        train, _, _ = data_preparation(config, create_dataset(config))
        pop = config.model_class(config, train._dataset)
        get_trainer(config)(config, pop).fit(train, None, saved=False)
        items = train._dataset.inter_feat["item_id"].numpy()
        expected = np.bincount(items, minlength=train._dataset.item_num)
        assert len(items) > 6000 and expected.max() > 1  # popular items repeat inside a batch of 64
        assert pop.item_cnt.view(-1).tolist() == expected.tolist()
        assert int(pop.max_cnt) == expected.max()
        scores.append(pop.full_sort_predict({"user_id": torch.tensor([1, 2])}).view(2, -1))
    assert torch.equal(scores[0], scores[1])
    assert torch.equal(scores[0][0], torch.from_numpy(expected / expected.max()))


def test_pop_leaves_out_rows_a_threshold_labels_negative(ml100k_slice, workdir):
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import Pop

    from conftest import quick_overrides
    from recbole_gfm.config import Config

    config = Config("Pop", "ml-100k-slice", config_dict=quick_overrides(ml100k_slice, threshold={"rating": 4}))
    train, _, _ = data_preparation(config, create_dataset(config))
    feat = train._dataset.inter_feat
    positive = feat["item_id"].numpy()[feat["label"].numpy() > 0]
    assert 0 < len(positive) < len(feat)
    expected = np.bincount(positive, minlength=train._dataset.item_num)
    assert Pop(config, train._dataset).item_cnt.view(-1).tolist() == expected.tolist()


def test_pop_fix_is_only_applied_while_recbole_miscounts():
    assert not compat._pop_miscounts()  # the patched calculate_loss counts nothing per batch
