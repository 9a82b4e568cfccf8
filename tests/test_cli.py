"""run_recbole_gfm.py's command line: config files with spaces in their paths, one-line errors."""

from __future__ import annotations

import pytest

from recbole_gfm import cli


@pytest.fixture
def runs(monkeypatch) -> list:
    """The arguments ``run`` is called with (nothing is trained)."""
    calls = []
    monkeypatch.setattr("recbole_gfm.quick_start.run", lambda *args, **kwargs: calls.append(args) or None)
    return calls


def test_config_files_may_hold_spaces(tmp_path, runs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my dir").mkdir()
    (tmp_path / "my dir" / "a.yaml").write_text("epochs: 2\n")
    (tmp_path / "b.yaml").write_text("epochs: 3\n")
    assert cli.main(["--model=BPR", "--dataset=ml-100k", "--config_files=my dir/a.yaml"]) == 0
    assert cli.main(["--model=BPR", "--dataset=ml-100k", "--config_files='my dir/a.yaml' b.yaml"]) == 0
    assert cli.main(["--model=BPR", "--dataset=ml-100k", "--config_files=b.yaml"]) == 0
    assert [call[2] for call in runs] == [["my dir/a.yaml"], ["my dir/a.yaml", "b.yaml"], ["b.yaml"]]


def test_an_unclosed_quote_in_config_files_is_one_line(runs, capsys):
    assert cli.main(["--model=BPR", "--dataset=ml-100k", "--config_files='my dir/a.yaml"]) == 2
    assert "quote each path that holds spaces" in capsys.readouterr().err and not runs


@pytest.mark.parametrize("case", ["missing", "no hash file"])
def test_prepare_foundation_errors_are_one_line(tmp_path, capsys, case):
    checkpoint = tmp_path / "GFM-x.pth"
    if case == "no hash file":
        checkpoint.write_bytes(b"not checked")
    assert cli.main([f"--prepare_foundation={checkpoint}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {checkpoint}") and error.count("\n") == 1
    if case == "no hash file":
        assert "GFM-x.pth.sha256" in error and "copy both" in error


def test_ctrl_c_on_a_board_is_one_line_saying_what_is_kept(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("recbole_gfm.bench.runner.run_benchmark", interrupted)
    assert cli.main(["--benchmark", "benchmarks/published-ml1m/"]) == 130
    err = capsys.readouterr().err
    assert "stopped (Ctrl-C). The board: its finished cells and trials are kept" in err and "Traceback" not in err
