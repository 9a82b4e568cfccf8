"""The papers' situations as changes of a built split: strict item cold start, and a new item type's launch.

Both change the train / validation / test split RecBole builds under any protocol (general models
only: a sequential split's rows carry histories that moving a row would break). They draw with
their own seed (``scenario_seed``), over external ids, so every model and every seed of a board is
scored on the same split.

**Item cold start** (``cold_item_ratio: 0.2``): the protocol of DropoutNet (Volkovs et al.,
NeurIPS 2017), Heater (Zhu et al., SIGIR 2020), CLCRec (Wei et al., MM 2021) and ALDI (Huang et
al., SIGIR 2023): items the model has never seen must be recommended from their content. A seeded
share of the items with interactions loses every train interaction; each moves to the validation
or the test split by its user (a seeded half of the users validates, the other half tests), so
early stopping sees held-out items too. Read it with the ``items=cold`` metrics
(:mod:`recbole_gfm.run.evaluation`): the held-out items are exactly the test items without a train
interaction.

**Type launch** (``launch_type: kids``, ``launch_keep: 0.05``): 2T-HGNN (Damianou et al., arXiv
2403.05185) was built to launch audiobooks on a platform of music and podcasts, a new item type
with little data of its own, carried by its links to the other types. The named type keeps a
seeded share of its train interactions; the others leave the data. The other types, the
validation and the test split stay as they are. Read it with the type's metrics
(``hit@10[type=kids]``), beside the same board without the launch.
"""

from __future__ import annotations

import zlib
from logging import getLogger

import numpy as np
from recbole.data.interaction import cat_interactions
from recbole.utils import ModelType

from recbole_gfm.config import ConfigError


def _chosen(tokens: np.ndarray, share: float, seed: int, salt: str) -> np.ndarray:
    """A seeded ``share`` of the distinct ``tokens`` (sorted first: the same whatever the id order), as a mask over ``tokens``."""
    distinct = np.unique(tokens)
    rng = np.random.default_rng([seed, zlib.crc32(salt.encode())])
    picked = rng.permutation(distinct)[: int(round(share * len(distinct)))]
    return np.isin(tokens, picked)


def _tokens(dataset, part, field: str) -> np.ndarray:
    return dataset.id2token(field, part.inter_feat[field].numpy()).astype(str)


def hold_out_items(config, dataset, train, valid, test):
    """Item cold start: a seeded ``cold_item_ratio`` of the items leave train, into validation or test by user."""
    uid, iid = dataset.uid_field, dataset.iid_field
    seed = config["scenario_seed"]
    items = np.concatenate([_tokens(dataset, part, iid) for part in (train, valid, test)])
    held = set(np.unique(items[_chosen(items, config["cold_item_ratio"], seed, "items")]).tolist())
    users = np.concatenate([_tokens(dataset, part, uid) for part in (train, valid, test)])
    validating = set(np.unique(users[_chosen(users, 0.5, seed, "users")]).tolist())
    moved = np.isin(_tokens(dataset, train, iid), list(held))
    to_valid = moved & np.isin(_tokens(dataset, train, uid), list(validating))
    rows = train.inter_feat
    parts = (
        train.copy(rows[np.flatnonzero(~moved)]),
        valid.copy(cat_interactions([valid.inter_feat, rows[np.flatnonzero(to_valid)]])),
        test.copy(cat_interactions([test.inter_feat, rows[np.flatnonzero(moved & ~to_valid)]])),
    )
    getLogger().info(
        f"Item cold start: {len(held)} of {len(np.unique(items))} items held out (scenario_seed {seed}); "
        f"{int(to_valid.sum())} train interactions moved to validation, {int((moved & ~to_valid).sum())} to test."
    )
    return parts


def launch_type(config, dataset, train, valid, test):
    """Type launch: ``launch_type`` keeps a seeded ``launch_keep`` of its train interactions."""
    field, name = config["item_type_field"], config["launch_type"]
    if dataset.item_feat is None or field not in dataset.item_feat:
        raise ConfigError(
            f"launch_type '{name}' needs the item type field '{field}' loaded: add it to load_col (item: [item_id, {field}])."
        )
    types = list(dataset.field2id_token[field])
    if name not in types:
        raise ConfigError(f"launch_type '{name}': no item has this type (types: {', '.join(t for t in types if t != '[PAD]')}).")
    of_item = dataset.item_feat[field].numpy()
    launched = of_item[train.inter_feat[dataset.iid_field].numpy()] == types.index(name)
    keys = np.char.add(np.char.add(_tokens(dataset, train, dataset.uid_field), "\x1f"), _tokens(dataset, train, dataset.iid_field))
    kept = np.zeros(len(keys), dtype=bool)
    kept[launched] = _chosen(keys[launched], config["launch_keep"], config["scenario_seed"], "launch")
    getLogger().info(
        f"Type launch: {name} keeps {int(kept.sum())} of its {int(launched.sum())} train interactions "
        f"(launch_keep {config['launch_keep']}, scenario_seed {config['scenario_seed']})."
    )
    return train.copy(train.inter_feat[np.flatnonzero(~launched | kept)]), valid, test


def use_scenarios(config, dataset) -> None:
    """Make ``dataset.build()`` apply the scenarios ``config`` asks for (none: nothing changes)."""
    steps = [step for key, step in (("cold_item_ratio", hold_out_items), ("launch_type", launch_type)) if config[key]]
    if not steps:
        return
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        raise ConfigError(
            f"{config['model']} is a sequential model: the cold-start scenarios (cold_item_ratio, launch_type) change "
            "a built split row by row, which would break its sequences. Run them with general models."
        )
    ratio = config["cold_item_ratio"]
    if ratio is not None and not 0 < ratio < 1:
        raise ConfigError(f"cold_item_ratio must be in (0, 1), got {ratio!r}.")
    if config["launch_type"] and not 0 < config["launch_keep"] <= 1:
        raise ConfigError(f"launch_keep must be in (0, 1], got {config['launch_keep']!r}.")
    build = dataset.build

    def build_with_scenarios():
        parts = build()
        for step in steps:
            parts = step(config, dataset, *parts)
        return list(parts)

    dataset.build = build_with_scenarios
