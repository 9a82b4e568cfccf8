"""What a single run shows on its console: progress at each validation, the device it runs on, plain numbers."""

from __future__ import annotations

import logging
import re

from conftest import quick_overrides
from recbole_gfm.quick_start import run


def test_a_single_run_shows_best_so_far_and_elapsed_time_the_device_and_plain_numbers(ml100k_slice, workdir, caplog):
    settings = quick_overrides(ml100k_slice, epochs=2, state="INFO", embedding_size=8)
    with caplog.at_level(logging.INFO):
        run("BPR", "ml-100k-slice", config_dict=settings, saved=False)
    console = re.sub(r"\x1b\[[0-9;]*m", "", caplog.text)  # RecBole's colours
    progress = re.findall(r"validation: epoch (\d) mrr@10 (0\.\d{4}), best (0\.\d{4}) \(epoch (\d)\), \d+\.\d s elapsed", console)
    assert [p[0] for p in progress] == ["0", "1"]
    assert all(float(best) >= float(score) for _, score, best, _ in progress)
    assert "use_gpu = False" in console  # RecBole's default True, on a machine that runs it on the CPU
    assert "np.float64" not in console and re.search(r"test result: recall@10 : 0\.\d+", console)
