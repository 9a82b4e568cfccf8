"""Named evaluation protocols (``properties/protocol/<name>.yaml``) and the split fix they need.

RecBole honours ``rs811`` (RS 8:1:1, RO, user-grouped) and ``loo`` (LS valid_and_test, TO) as
configured. For ``temporal`` (RS, TO, ``group_by: none``) it sorts all interactions by time and cuts
by *position*, so interactions sharing the timestamp at a cut can fall on both sides;
:func:`data_preparation` moves each such cut back to the first interaction at that timestamp.
(RecBole's own ``TS`` split is no global cut either: it splits train / valid per user.)
"""

from __future__ import annotations

import os
import types
from logging import getLogger

import numpy as np
from recbole.data import data_preparation as recbole_data_preparation

from recbole_gfm.config import PROPERTIES_DIR, ConfigError

PROTOCOL_DIR = os.path.join(PROPERTIES_DIR, "protocol")


def available() -> list[str]:
    """Names of the protocols shipped in ``properties/protocol``."""
    return sorted(name[:-5] for name in os.listdir(PROTOCOL_DIR) if name.endswith(".yaml"))


def protocol_file(name: str) -> str:
    """The properties file of protocol ``name`` (e.g. ``temporal``), to use as a config file."""
    path = os.path.join(PROTOCOL_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        raise ConfigError(f"Unknown protocol '{name}'. Available: {', '.join(available())}.")
    return path


def is_global_time_split(config) -> bool:
    """True when the split is RS over all interactions ordered by time: a global temporal split."""
    args = config["eval_args"]
    group_by = args.get("group_by")
    return (
        args.get("order") == "TO"
        and "RS" in (args.get("split") or {})
        and (group_by is None or str(group_by).lower() == "none")
        and not config["benchmark_filename"]
    )


def _tie_aware_cuts(times: np.ndarray, cuts: list[int]) -> list[int]:
    """Move every cut back to the first position of the timestamp found at the cut."""
    return [int(np.searchsorted(times, times[c], side="left")) if 0 < c < len(times) else int(c) for c in cuts]


def _split_by_ratio_on_time(self, ratios, group_by=None):
    """``Dataset.split_by_ratio`` for time-sorted data whose cuts never separate tied timestamps."""
    times = self.inter_feat[self.time_field].numpy()
    total = len(times)
    positional = list(self._calcu_split_ids(tot=total, ratios=[r / sum(ratios) for r in ratios]))
    cuts = _tie_aware_cuts(times, positional)
    if cuts != positional:
        getLogger().info(f"Global temporal split: cuts moved from {positional} to {cuts} to keep tied timestamps together.")
    bounds = [0] + cuts + [total]
    self._drop_unused_col()
    return [self.copy(self.inter_feat[np.arange(start, end)]) for start, end in zip(bounds[:-1], bounds[1:])]


def data_preparation(config, dataset):
    """RecBole's ``data_preparation``, with the global temporal split's cuts kept off tied timestamps."""
    if is_global_time_split(config):
        if not dataset.time_field or dataset.time_field not in dataset.inter_feat:
            raise ConfigError(
                f"The global temporal split (order TO, group_by none) needs the time field "
                f"'{config['TIME_FIELD']}': add it to load_col's inter columns."
            )
        dataset.split_by_ratio = types.MethodType(_split_by_ratio_on_time, dataset)
    return recbole_data_preparation(config, dataset)
