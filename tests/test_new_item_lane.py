"""The new-item lane: its places in the ranking, its scores, GFM learning of later interactions, slots chosen on validation."""

from __future__ import annotations

import torch
from recbole.utils import init_seed

from conftest import typed_overrides
from recbole_gfm.config import Config
from recbole_gfm.model.new_item_lane import NewItemLane
from recbole_gfm.quick_start import run
from recbole_gfm.run.inputs import build_with_inputs
from recbole_gfm.run.stages import prepare_data


def lane_of(n: int = 8, new=(5, 6, 7), k: int = 4) -> NewItemLane:
    text = torch.eye(n) + 0.1  # every item a little like every other
    known = torch.ones(n, dtype=torch.bool)
    known[list(new)] = False
    return NewItemLane(text, known, knn=3, k=k)


def test_the_best_new_items_take_even_places_of_the_top_k_and_the_known_keep_their_order():
    lane = lane_of()
    tower = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6, 0.95, 0.1, 0.2]])  # item 5 is new: the tower alone ranks it first
    lane_scores = torch.tensor([[0.0, 0, 0, 0, 0, 0.1, 0.5, 0.3]])  # new items 6 > 7 > 5 by the lane
    merged = lane.merge(tower, lane_scores, slots=2)
    ranking = torch.argsort(merged[0], descending=True).tolist()
    # places 1 and 3 (0-based) of the top 4 hold the lane's two best new items; the known items fill the rest in order
    assert ranking[:6] == [1, 6, 2, 7, 3, 4] and ranking[-1] == 5, ranking
    assert torch.equal(lane.merge(tower, lane_scores, slots=0), tower)


def test_lane_ties_are_broken_by_the_tower_never_by_item_id():
    lane = lane_of()
    tower = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6, 0.1, 0.3, 0.2]])
    tied = torch.tensor([[0.0, 0, 0, 0, 0, 0.5, 0.5, 0.5]])
    ranking = torch.argsort(lane.merge(tower, tied, slots=1)[0], descending=True).tolist()
    assert ranking[3] == 6, "of three new items tied in the lane, the tower's best (6, not the smallest id 5) is shown"


def test_lane_scores_sum_the_text_nearness_of_the_history_over_new_items_only():
    lane = lane_of()
    history = torch.sparse_coo_tensor(torch.tensor([[0, 0], [1, 2]]), torch.ones(2), (1, 8), check_invariants=True).coalesce()
    scores = lane.scores(history)[0]
    assert torch.all(scores[:5] == 0), "known items get no lane score"
    assert torch.all(scores[5:] >= 0)
    lane.set_known(torch.ones(8, dtype=torch.bool))
    assert torch.all(lane.scores(history) == 0), "once every item is known the lane is empty"


def test_gfm_learns_of_later_interactions_and_chooses_its_slots_on_validation(typed_slice, workdir):
    config = Config("GFM", typed_slice["dataset"], config_dict=typed_overrides(typed_slice, use_foundation=False,
                                                                               new_item_slots="auto", cold_item_ratio=0.2))  # fmt: skip
    init_seed(config["seed"], True)
    split = prepare_data(config)
    model = build_with_inputs(config, split)
    new_before = int(model.lane.new.sum())
    inter = split.valid_data._dataset.inter_feat
    users, items = inter["user_id"], inter["item_id"]
    before = int(model.history_indptr[-1])
    counts_before = model.history(users)[1].sum()  # builds the cached per-user sums
    model.know(users, items)
    assert int(model.history_indptr[-1]) == before + len(users), "the validation period joined the histories"
    assert model.history(users)[1].sum() > counts_before, "the cached sums follow the grown histories"
    assert int(model.lane.new.sum()) < new_before and not bool(model.lane.new[items].any())
    user = int(users[0])
    row = model.history_items[model.history_indptr[user]:model.history_indptr[user + 1]]
    assert set(items[users == user].tolist()) <= set(row.tolist())
    seen = []
    chosen = model.calibrate(lambda: seen.append(model.slots) or [0.1, 0.3, 0.3, 0.2][min(model.slots, 3)])
    assert seen == list(range(11)) and chosen["new_item_slots"] == 1 == model.slots, "the best score, fewest slots"


def test_a_gfm_run_with_the_lane_records_its_choice_and_reaches_held_out_items(typed_slice, workdir):
    settings = typed_overrides(typed_slice, use_foundation=False, new_item_slots="auto", cold_item_ratio=0.2,
                               per_type_eval=True, test_with_validation_history=True, epochs=2)  # fmt: skip
    record = run("GFM", typed_slice["dataset"], config_dict=settings)
    chosen = record["calibration"]["new_item_slots"]
    assert 0 <= chosen <= 10 and len(record["calibration"]["validation"]) == 11
    if chosen > 0:
        assert record["test_result"]["hit@10[items=cold]"] > 0
