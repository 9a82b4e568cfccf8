"""Probe: 45 things a new user or an adversary does, run as they would run them, from a fresh clone.

    python experiments/new_user_cases.py [--only NAME,NAME] [--keep]   (from the repository's root, .venv set up)

Each case runs ``run_recbole_gfm.py`` (or a few lines of the serving API) in a scratch folder on a
small typed slice of ml-100k-typed, and passes when it ends the way the case says: a clear error
that names the file, key or row it is about, with no traceback and no result written; or, for the
cases that must work, a run that works. Prints one line per case and a Markdown report
(experiments/new_user_cases.md is the committed one).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
ENTRY = str(ROOT / "run_recbole_gfm.py")
TRACEBACK = "Traceback (most recent call last)"
DATA = "tiny-typed"


@dataclass
class Case:
    name: str
    what: str
    args: list[str] = field(default_factory=list)  # run_recbole_gfm.py arguments (or a serving snippet)
    expect: tuple[str, ...] = ()  # substrings the output must hold (the file, key or row named)
    ok: bool = False  # True: the command must succeed (exit 0)
    snippet: str = ""  # Python run instead of the CLI; it prints RAISED <type>: <message> or OK
    setup: object = None  # callable(scratch) run first
    custom: object = None  # callable(scratch) -> (passed, detail) for cases that are not one command
    timeout: int = 300


def sh(args: list[str], cwd: Path, timeout: int = 300) -> tuple[int, str]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout + p.stderr


def cli(*args: str) -> list[str]:
    return [PYTHON, ENTRY, *args]


def base(scratch: Path, model: str = "BPR", *extra: str) -> list[str]:
    """A run on the tiny typed slice with its properties file, quiet."""
    return [f"--model={model}", f"--dataset={DATA}", f"--config_files={scratch / 'tiny.yaml'}", *extra]


# ---------------------------------------------------------------- scratch data


def make_scratch(scratch: Path) -> None:
    """tiny-typed: users 1..40 of ml-100k-typed, items seen by >= 3 of them; its properties file."""
    sys.path.insert(0, str(ROOT))
    from recbole_gfm.data.prepare import prepare

    source = Path(prepare("ml-100k-typed", out=str(scratch / "full")))
    folder = scratch / "data" / DATA
    folder.mkdir(parents=True)
    inter = pd.read_csv(source / "ml-100k-typed.inter", sep="\t")
    inter = inter[inter["user_id:token"] <= 40]
    popular = inter["item_id:token"].value_counts()
    inter = inter[inter["item_id:token"].isin(popular[popular >= 3].index)]
    inter.to_csv(folder / f"{DATA}.inter", sep="\t", index=False)
    item = pd.read_csv(source / "ml-100k-typed.item", sep="\t")
    item[item["item_id:token"].isin(inter["item_id:token"])].to_csv(folder / f"{DATA}.item", sep="\t", index=False)
    (scratch / "tiny.yaml").write_text(
        f"data_path: {scratch / 'data'}\n"
        "load_col: {inter: [user_id, item_id, rating, timestamp], item: [item_id, item_type, title, genres]}\n"
        "text_fields: [title, genres]\n"
        f"cache_dir: {scratch / 'cache'}\n"
        "epochs: 1\nshow_progress: False\nstate: WARNING\n"
        "foundation: {epochs: 1, eval_step: 1}\n"
    )


def variant(scratch: Path, name: str, edit) -> Path:
    """A copy of tiny-typed named ``name``, its frames changed by ``edit(inter, item)``; its properties file."""
    src = scratch / "data" / DATA
    folder = scratch / "data" / name
    folder.mkdir(parents=True, exist_ok=True)
    inter = pd.read_csv(src / f"{DATA}.inter", sep="\t")
    item = pd.read_csv(src / f"{DATA}.item", sep="\t")
    inter, item = edit(inter, item)
    inter.to_csv(folder / f"{name}.inter", sep="\t", index=False)
    item.to_csv(folder / f"{name}.item", sep="\t", index=False)
    return folder


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def board(scratch: Path, name: str, models: str, extra: str = "") -> Path:
    return write(
        scratch / "boards" / name / "board.yaml",
        f"protocol: loo\ndatasets:\n  {DATA}: {{}}\nmodels:\n{models}\nseeds: [2020]\n"
        f"config:\n  data_path: {scratch / 'data'}\n  epochs: 1\n  show_progress: False\n  state: ERROR\n{extra or OWN_DATA}",
    )


# a board on the user's own data (no properties file): what every row loads, with the item type and text
OWN_DATA = "  load_col: {inter: [user_id, item_id, timestamp], item: [item_id, item_type, title]}\n  text_fields: [title]\n"


# ---------------------------------------------------------------- cases that are not one command


def orphan_workers(scratch: Path) -> tuple[bool, str]:
    """kill -9 of a --nproc=2 run's parent: its workers die with it, and the next run gets the port."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    args = cli(*base(scratch, "BPR", "--nproc=2", "--epochs=200", "--nosave", "--stopping_step=200"))
    p = subprocess.Popen(args, cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    time.sleep(25)
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(8)
    alive = [c for c in children if Path(f"/proc/{c}").exists()]
    if alive:
        for c in alive:
            os.kill(int(c), signal.SIGKILL)
        return False, f"workers {alive} outlived their parent"
    rc, out = sh(cli(*base(scratch, "BPR", "--nproc=2", "--epochs=1", "--nosave")), scratch)
    return rc == 0 and TRACEBACK not in out, f"{len(children)} workers died with the parent; the next --nproc=2 run exit {rc}"


def ctrl_c_board(scratch: Path) -> tuple[bool, str]:
    """SIGINT to a running board: one line that says what is kept, exit 130, no traceback."""
    spec = board(scratch, "ctrlc", "  BPR: {epochs: 300, stopping_step: 300}")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    p = subprocess.Popen(cli(f"--benchmark={spec}"), cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    time.sleep(30)
    os.killpg(p.pid, signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    good = p.returncode == 130 and TRACEBACK not in out and "Ctrl-C" in out and "signal 9" not in out
    return good, f"exit {p.returncode}; last line: {out.strip().splitlines()[-1] if out.strip() else ''}"


def damaged_cell(scratch: Path) -> tuple[bool, str]:
    """A cell file cut in half: the board names it, sets it aside and runs that cell again."""
    spec = board(scratch, "damaged", "  Pop: {}")
    rc, out = sh(cli(f"--benchmark={spec}"), scratch)
    cells = sorted((outputs(scratch, "damaged") / "cells").glob("*.json"))
    cells = [c for c in cells if "seed" in c.name]
    if rc != 0 or not cells:
        return False, f"first run exit {rc}, {len(cells)} cells"
    text = cells[0].read_text()
    cells[0].write_text(text[: len(text) // 2])
    rc, out = sh(cli(f"--benchmark={spec}"), scratch)
    return rc == 0 and TRACEBACK not in out and cells[0].name in out, f"exit {rc}; {first_line_with(out, cells[0].name)}"


def baselines_read_types(scratch: Path) -> tuple[bool, str]:
    """A board on the user's own data whose load_col names no .item field: every row still reads the item types
    (per-type columns filled), or the board refuses, naming what to load."""
    spec = board(scratch, "types", "  Pop: {}\n  ItemKNN: {}", "  load_col: {inter: [user_id, item_id, timestamp]}\ntype_columns: [hit@10]\n")
    rc, out = sh(cli(f"--benchmark={spec}"), scratch)
    table = outputs(scratch, "types") / "leaderboard.md"
    if rc != 0:
        return TRACEBACK not in out and "item" in out, f"refused, exit {rc}: {first_line_with(out, 'error')}"
    if not table.exists():
        return False, f"exit {rc}, no leaderboard: {last_line(out)}"
    per_type = table.read_text().split("## hit@10 per item type")[-1].split("\n## ")[0]
    rows = [line for line in per_type.splitlines() if line.startswith(f"| {DATA} | ")]
    dashes = sum(line.count("| - ") for line in rows)
    return len(rows) == 2 and dashes == 0, f"per-type table: {len(rows)} rows, {dashes} empty cells"


def add_row_other_split(scratch: Path) -> tuple[bool, str]:
    """--add-row on a board whose dataset changed since its rows ran: refused, with the reason."""
    data = scratch / "data" / "addrow-data"
    variant(scratch, "addrow-data", lambda inter, item: (inter, item))
    folder = scratch / "boards" / "addrow"
    write(folder / "board.yaml",
          f"protocol: loo\ndatasets:\n  addrow-data: {{}}\nmodels:\n  Pop: {{}}\nseeds: [2020]\n"
          f"config:\n  data_path: {scratch / 'data'}\n  epochs: 1\n  show_progress: False\n  state: ERROR\n{OWN_DATA}")  # fmt: skip
    rc, out = sh(cli(f"--benchmark={folder}"), scratch)
    if rc != 0:
        return False, f"the board's own run failed: {last_line(out)}"
    inter = pd.read_csv(data / "addrow-data.inter", sep="\t")
    inter.iloc[:-50].to_csv(data / "addrow-data.inter", sep="\t", index=False)
    row = write(scratch / "my_row.yaml", "models:\n  ItemKNN: {}\n")
    rc, out = sh(cli(f"--benchmark={folder}", f"--add-row={row}"), scratch)
    return rc != 0 and TRACEBACK not in out and "fingerprint" in out.lower(), f"exit {rc}: {last_line(out)}"


def outputs(scratch: Path, name: str) -> Path:
    """Where a board writes: its own folder (a board of record) when it is a board.yaml in one, else results/benchmark/NAME."""
    folder = scratch / "boards" / name
    return folder if (folder / "leaderboard.md").exists() or (folder / "cells").exists() else scratch / "results" / "benchmark" / name


def first_line_with(text: str, needle: str) -> str:
    return next((line.strip() for line in text.splitlines() if needle in line), "(not named)")[:160]


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


# ---------------------------------------------------------------- serving

SERVE = """
import glob, sys
sys.path.insert(0, {root!r})
from recbole_gfm.inference import Recommender
ckpt = sorted(glob.glob({saved!r} + '/*.pth'))[0]
try:
{body}
    print('OK')
except Exception as e:
    print(f'RAISED {{type(e).__name__}}: {{e}}')
"""


def train_checkpoint(scratch: Path) -> None:
    if not list((scratch / "saved").glob("*.pth")):
        rc, out = sh(cli(*base(scratch, "GFM", f"--checkpoint_dir={scratch / 'saved'}")), scratch, timeout=900)
        if rc != 0:
            raise RuntimeError(f"training the serving checkpoint failed:\n{out[-3000:]}")


# ---------------------------------------------------------------- the cases


def cases(s: Path) -> list[Case]:
    bad = s / "bad"
    return [
        # the command line
        Case("unknown-model", "--model=GMF (a typo)", base(s, "GMF"), ("GMF", "GFM")),
        Case("unknown-dataset", "--dataset with no files", ["--model=BPR", "--dataset=nosuch", f"--config_files={s / 'tiny.yaml'}"], ("nosuch",)),
        Case("epochs-word", "--epochs=ten", base(s, "BPR", "--epochs=ten"), ("epochs",)),
        Case("lr-word", "--learning_rate=fast", base(s, "BPR", "--learning_rate=fast"), ("learning_rate",)),
        Case("epochs-zero", "--epochs=0 (would test an untrained model)", base(s, "BPR", "--epochs=0"), ("epochs",)),
        Case("nproc-zero", "--nproc=0", base(s, "BPR", "--nproc=0"), ("nproc",)),
        Case("protocol-unknown", "--protocol=weekly", [*base(s, "BPR"), "--protocol=weekly"], ("weekly",)),
        Case("metric-unknown", "--valid_metric=foo@10", base(s, "BPR", "--valid_metric=foo@10"), ("valid_metric",)),
        Case("foundation-typo", "--foundation={'epoch':1}", base(s, "GFM", "--foundation={'epoch':1}"), ("epoch", "epochs")),
        Case("foundation-type", "--foundation={'epochs':'x'}", base(s, "GFM", "--foundation={'epochs':'x'}"), ("foundation", "epochs")),
        Case("config-missing", "--config_files=missing.yaml", ["--model=BPR", f"--dataset={DATA}", "--config_files=missing.yaml"], ("missing.yaml",)),
        Case("config-yaml", "a properties file that is not YAML", ["--model=BPR", f"--dataset={DATA}", f"--config_files={bad / 'broken.yaml'}"], ("broken.yaml",),
             setup=lambda s: write(s / "bad" / "broken.yaml", "epochs: [1, 2\nlearning_rate: 0.1\n")),
        Case("config-type", "learning_rate: fast in a properties file", ["--model=BPR", f"--dataset={DATA}", f"--config_files={s / 'tiny.yaml'} {bad / 'lr.yaml'}"], ("lr.yaml", "learning_rate"),
             setup=lambda s: write(s / "bad" / "lr.yaml", "learning_rate: fast\n")),
        Case("config-spaces", "a properties file whose path holds spaces", ["--model=BPR", f"--dataset={DATA}", f"--config_files={s / 'my dir' / 'a.yaml'}"], ("my dir", "stopping_step"),
             setup=lambda s: write(s / "my dir" / "a.yaml", "stopping_step: -1\n")),
        Case("jobs-single-run", "--jobs=2 on a single run", base(s, "BPR", "--jobs=2"), ("--jobs",)),
        Case("prepare-missing", "--prepare_foundation=nosuch.pth", ["--prepare_foundation=nosuch.pth"], ("nosuch.pth",)),
        Case("stray-argument", "a positional argument", [*base(s, "BPR"), "fast"], ("fast",)),
        Case("top-level-typo", "max_epoch: 1 at the top level (RecBole warns, the run goes on)", base(s, "BPR", "--max_epoch=1", "--nosave"), ("max_epoch", "epochs"), ok=True),
        Case("console", "a CPU run's console: no use_gpu = True, no np.float64(...)", base(s, "BPR", "--nosave", "--use_gpu=False"), ("test_result",), ok=True),
        # data files
        Case("negative-time", "negative timestamps", ["--model=BPR", "--dataset=neg-time", f"--config_files={s / 'tiny.yaml'}"], ("neg-time", "timestamp"),
             setup=lambda s: variant(s, "neg-time", lambda i, t: (i.assign(**{"timestamp:float": -i["timestamp:float"]}), t))),
        Case("no-item-column", ".inter without its item_id column", ["--model=BPR", "--dataset=no-item", f"--config_files={s / 'tiny.yaml'}"], ("no-item", "item_id"),
             setup=lambda s: variant(s, "no-item", lambda i, t: (i.drop(columns=["item_id:token"]), t))),
        Case("no-type-field", "GFM on a .item without item_type", ["--model=GFM", "--dataset=no-type", f"--config_files={s / 'tiny.yaml'}"], ("item_type",),
             setup=lambda s: variant(s, "no-type", lambda i, t: (i, t.drop(columns=["item_type:token"])))),
        Case("no-text-field", "text_fields naming a missing field", base(s, "GFM", "--text_fields=['blurb']"), ("blurb",)),
        Case("empty-inter", "an .inter with only its header", ["--model=BPR", "--dataset=empty", f"--config_files={s / 'tiny.yaml'}"], ("empty",),
             setup=lambda s: variant(s, "empty", lambda i, t: (i.iloc[:0], t))),
        Case("duplicate-items", "an .item that lists an item twice", ["--model=GFM", "--dataset=dup-item", f"--config_files={s / 'tiny.yaml'}"], ("dup-item", "item_id"),
             setup=lambda s: variant(s, "dup-item", lambda i, t: (i, pd.concat([t, t.iloc[:3]])))),
        # benchmarks
        Case("row-typo", "BPR: {learing_rate: 0.1} in a board", [f"--benchmark={s / 'boards' / 'typo' / 'board.yaml'}"], ("board.yaml", "BPR", "learning_rate"),
             setup=lambda s: board(s, "typo", "  BPR: {learing_rate: 0.1}")),
        Case("row-model", "a row whose model does not exist", [f"--benchmark={s / 'boards' / 'nomodel' / 'board.yaml'}"], ("board.yaml", "BRP"),
             setup=lambda s: board(s, "nomodel", "  BRP: {}")),
        Case("board-missing", "--benchmark of a file that is not there", [f"--benchmark={s / 'boards' / 'none.yaml'}"], ("none.yaml",)),
        Case("budget-word", "--time-budget=soon", [f"--benchmark={s / 'boards' / 'typo' / 'board.yaml'}", "--time-budget=soon"], ("--time-budget",),
             setup=lambda s: board(s, "typo", "  BPR: {learing_rate: 0.1}")),
        Case("rows-unknown", "--rows naming no row", [f"--benchmark={s / 'boards' / 'rows' / 'board.yaml'}", "--rows=LightGNC"], ("LightGNC",),
             setup=lambda s: board(s, "rows", "  Pop: {}")),
        Case("row-metric", "a row validating on another metric than the board", [f"--benchmark={s / 'boards' / 'metric' / 'board.yaml'}"], ("valid_metric", "BPR"),
             setup=lambda s: board(s, "metric", "  Pop: {}\n  BPR: {valid_metric: MRR@10}")),
        Case("row-foundation-typo", "a typo inside a row's foundation:", [f"--benchmark={s / 'boards' / 'ftypo' / 'board.yaml'}"], ("GFM", "epoch"),
             setup=lambda s: board(s, "ftypo", "  GFM: {foundation: {epoch: 1}}")),
        Case("add-row-dup", "--add-row of a label the board already has", [f"--benchmark={s / 'boards' / 'dup'}", f"--add-row={s / 'dup_row.yaml'}"], ("Pop",),
             setup=lambda s: (board(s, "dup", "  Pop: {}"), write(s / "dup_row.yaml", "models:\n  Pop: {}\n"))),
        Case("add-row-empty", "--add-row of a file with no models:", [f"--benchmark={s / 'boards' / 'dup'}", f"--add-row={s / 'no_models.yaml'}"], ("no_models.yaml", "models"),
             setup=lambda s: (board(s, "dup", "  Pop: {}"), write(s / "no_models.yaml", "search: {}\n"))),
        Case("orphans", "kill -9 of a --nproc=2 run's parent", custom=orphan_workers),
        Case("ctrl-c", "Ctrl-C on a running board", custom=ctrl_c_board),
        Case("damaged-cell", "a finished cell's file cut in half", custom=damaged_cell),
        Case("own-data-types", "a board on the user's own data: every row reads the item types", custom=baselines_read_types),
        Case("add-row-split", "--add-row after the board's data changed", custom=add_row_other_split),
        # serving
        Case("serve-no-sha", "a .pth without its .sha256", snippet="    import os; os.rename(ckpt + '.sha256', ckpt + '.bak')\n    try:\n        Recommender.load(ckpt)\n    finally:\n        os.rename(ckpt + '.bak', ckpt + '.sha256')", expect=("ConfigError", ".sha256")),
        Case("serve-repeated-id", "add_items with one id twice", snippet="    Recommender.load(ckpt).add_items(['n1', 'n1'], ['a', 'b'], ['kids', 'kids'])", expect=("ValueError", "n1")),
        Case("serve-int-ids", "a history of integer ids", snippet="    Recommender.load(ckpt).recommend([50, 172])", expect=("TypeError", "'50'")),
        Case("serve-k", "k = -1", snippet="    Recommender.load(ckpt).recommend(['50'], k=-1)", expect=("ValueError", "k must")),
        Case("serve-pad", "'[PAD]' in a history", snippet="    Recommender.load(ckpt).recommend(['[PAD]', '50'])", expect=("ValueError", "[PAD]")),
        Case("serve-device", "load(device='cuda:1') on a CPU machine", snippet="    Recommender.load(ckpt, device='cuda:1')", expect=("ConfigError", "cuda")),
    ]


def run_case(case: Case, scratch: Path) -> tuple[bool, str, float]:
    start = time.time()
    if case.setup:
        case.setup(scratch)
    if case.custom:
        passed, detail = case.custom(scratch)
        return passed, detail, time.time() - start
    if case.snippet:
        train_checkpoint(scratch)
        code = SERVE.format(root=str(ROOT), saved=str(scratch / "saved"), body=case.snippet)
        rc, out = sh([PYTHON, "-c", code], scratch, case.timeout)
        line = next((x for x in out.splitlines() if x.startswith(("RAISED", "OK"))), last_line(out))
        passed = line.startswith("RAISED") and all(e in line for e in case.expect) and TRACEBACK not in out
        return passed, line[:200], time.time() - start
    rc, out = sh(cli(*case.args), scratch, case.timeout)
    named = all(e in out for e in case.expect)
    if case.ok:
        clean = "np.float64(" not in out and "use_gpu = True" not in out
        passed = rc == 0 and TRACEBACK not in out and named and clean
        detail = f"exit {rc}" + ("" if clean else ", np.float64 or use_gpu = True in the console")
        if case.name == "top-level-typo":
            detail += f"; {first_line_with(out, 'max_epoch')}"
    else:
        passed = rc != 0 and TRACEBACK not in out and named
        detail = f"exit {rc}: {first_line_with(out, 'error') if 'error' in out else last_line(out)}"
    return passed, detail, time.time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated case names")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--report", default=None, help="write the Markdown report here")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="new-user-cases-"))
    make_scratch(scratch)
    chosen = cases(scratch)
    if args.only:
        chosen = [c for c in chosen if c.name in args.only.split(",")]
    results = []
    for case in chosen:
        try:
            passed, detail, took = run_case(case, scratch)
        except Exception as e:  # the probe's own failure is a failed case, not a stop
            passed, detail, took = False, f"probe error: {type(e).__name__}: {e}"[:200], 0.0
        results.append((case, passed, detail, took))
        print(f"{'PASS' if passed else 'FAIL'}  {case.name:<20} {took:6.1f} s  {detail}", flush=True)
    passed = sum(p for _, p, _, _ in results)
    print(f"\n{passed} of {len(results)} cases end as they should")
    if args.report:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        lines = [
            f"# A new user's and an adversary's {len(results)} cases, from a fresh clone",
            "",
            f"Command: `python experiments/new_user_cases.py --report experiments/new_user_cases.md` (commit {commit}, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}).",
            "A case passes when it ends as it should: a clear error naming the file, key or row, with no traceback and "
            "no result; or, for the cases that must work, a clean run.",
            "",
            f"**{passed} of {len(results)} pass.**",
            "",
            "| case | what the user does | passes | what they see |",
            "|---|---|---|---|",
        ]
        for case, ok, detail, _ in results:
            lines.append(f"| {case.name} | {case.what} | {'yes' if ok else '**no**'} | {detail.replace('|', '/')} |")
        Path(args.report).write_text("\n".join(lines) + "\n")
    if not args.keep:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"scratch: {scratch}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
