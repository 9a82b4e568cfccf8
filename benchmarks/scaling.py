"""Scaling benchmark: time and memory of BPR, LightGCN, SASRec and GFM as the data grow, 1 vs 2 processes.

    .venv/bin/python benchmarks/scaling.py --sizes 1e5 1e6 > benchmarks/scaling.md
    .venv/bin/python benchmarks/scaling.py --sizes 1e5 1e6 1e7 --users-case 1000000 --max-steps 100 > benchmarks/scaling.md

**Data.** :func:`generate` writes a synthetic multi-type dataset (seeded, once, to
``dataset/scaling-<interactions>-t<types>/``): users with power-law activity (P(n) ~ n^-2 on
2..500 interactions, ~9 on average, so users grow with the interactions), a catalogue of
interactions / 20 items with Zipf(0.9) popularity, ``--types`` item types of geometric shares
(0.7^t) drawn independently of popularity so that every user mixes types, uniform timestamps
over two years, and 2-6 word titles from a 2,000-word vocabulary. ``--users-case U`` adds a set
of U users and 10 types (about 9 U interactions); its foundation HGNN uses USERS_CASE_FOUNDATION.

**Text encoder.** MiniLM encodes ~90 items/s on this CPU: hours for 10^5-10^6 items. The
benchmark builds a cheap sentence-transformers model instead, a ``StaticEmbedding`` (mean of
64-d seeded random word vectors) over the vocabulary's word-level tokenizer, saves it to
``.cache/scaling/static-encoder`` and passes that folder as ``text_encoder`` (any
sentence-transformers name or path works); it encodes ~30,000 items/s.

**Cases.** One subprocess per (set, model, processes): peak RSS (``ru_maxrss``) is the case's
own; with 2 processes each rank reports its own and the table gives the largest and the sum.
A case runs the stages of :func:`recbole_gfm.quick_start.run_process` step by step (RecBole's
RS 8:1:1 time-ordered user split, full ranking; each model's default settings but SASRec's batch
of 512 sequences, see MODEL_SETTINGS) and times ``data`` (RecBole's dataset and split),
``epoch`` (one training epoch of RecBole's Trainer; with ``--max-steps`` its first steps,
extrapolated to the epoch; ``--foundation-steps`` for the foundation's HGNN) and ``eval`` (RecBole's
full-ranking evaluation of ``--eval-users`` sampled validation users; ``eval all users``
extrapolates it to every validation user).
LightGCN's ``graph`` is its constructor (the normalised adjacency). GFM is two rows, as it is
two stages: ``GFM-foundation`` (one process) encodes every title (``text``, uncached), builds the
co-interaction graph (``graph``), trains the HGNN one epoch (``epoch``) and exports the artifact
(``export``: every item's vector, saved); the ``GFM`` rows (the adapter) read that artifact, so
their memory is the adapter's own. With 2 processes the training steps are the ranks' shards of
each global batch and rank 0 evaluates (:mod:`recbole_gfm.compat`). Finished cases are kept in
``results/scaling/`` (one JSON each, written atomically with its hash, named by a fingerprint of
the case, the package's code and versions) and skipped when run again (``--fresh``: run again).

**Report.** Markdown on stdout: the machine, a table of every case, and for each model the
exponent b of ``y ~ interactions^b`` (least squares on log-log over the sizes run) for the time
per epoch, the peak RSS through training (above the process's RSS after its imports, and raw),
the peak RSS of the whole case (evaluation included), the graph build and the foundation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from itertools import islice

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's recbole_gfm, whatever is installed

from graph_and_text import machine  # noqa: E402  (this folder is on sys.path when a script runs)
from recbole_gfm.artifacts import (  # noqa: E402
    file_fingerprint, fingerprint, package_versions, read_json, result_code_fingerprint, write_json,
)  # fmt: skip
WORK = os.environ.get("RECBOLE_GFM_SCALING_ROOT", ROOT)  # where data, caches and cases go (tests: a temporary folder)
DATA = os.path.join(WORK, "dataset")
CACHE = os.path.join(WORK, ".cache", "scaling")
STORE = os.path.join(WORK, "results", "scaling")
ENCODER = os.path.join(CACHE, "static-encoder")
MODELS = ("BPR", "LightGCN", "SASRec", "GFM")
FOUNDATION = "GFM-foundation"  # the HGNN GFM reads, trained once per set (one process) before the GFM rows
ROW_ORDER = ("BPR", "LightGCN", "SASRec", FOUNDATION, "GFM")
VOCABULARY = 2000
ACTIVITY = np.arange(2, 501)  # interactions per user, P(n) ~ n^-2
# users per evaluation batch: 1024, fewer when a batch's score matrix would pass 2^25 floats (128 MB)
EVAL_USERS_PER_BATCH, SCORES_PER_EVAL_BATCH = 1024, 1 << 25
# SASRec's CE loss scores the whole catalogue per sequence: at RecBole's 2048 a 500k-item catalogue
# takes 4 GB of logits (and as much again for their gradient); the work per epoch is the same.
MODEL_SETTINGS = {"SASRec": {"train_batch_size": 512}}
# The users case's foundation: with 10 types an item has up to 10 relations, so the default fan-out
# (10 per relation and layer) reaches 100 neighbours a hop and a 4,096-edge batch's two hops cover
# ~40M edges (~10 GB of messages): smaller fan-outs and batches keep its HGNN within this machine.
USERS_CASE_FOUNDATION = {"fanouts": [3, 3], "train_batch_size": 1024}


# --------------------------------------------------------------------------------------------
# Data and encoder


def vocabulary(n: int = VOCABULARY, seed: int = 0) -> list[str]:
    """``n`` distinct pronounceable words (consonant-vowel syllables): the titles' and the encoder's."""
    rng = np.random.default_rng(seed)
    consonants, vowels = list("bdfgklmnprstvz"), list("aeiou")
    found: dict[str, None] = {}
    while len(found) < n:
        syllables = rng.integers(2, 4)
        found["".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))] = None
    return list(found)


def dataset_name(interactions: int | None, types: int, users: int | None = None) -> str:
    return f"scaling-u{users}-t{types}" if users else f"scaling-{interactions:.0e}-t{types}".replace("+0", "").replace("+", "")


def generate(name: str, interactions: int | None, types: int, users: int | None = None, seed: int = 0) -> str:
    """Write ``dataset/<name>/<name>.{inter,item}`` (see the module doc) unless it exists; return the folder."""
    import pandas as pd

    folder = os.path.join(DATA, name)
    if os.path.isfile(os.path.join(folder, f"{name}.item")):
        return folder
    rng = np.random.default_rng(seed)
    share = ACTIVITY.astype(float) ** -2.0
    share /= share.sum()
    if users is None:
        users = math.ceil(interactions / float(ACTIVITY @ share) * 1.05)
    activity = rng.choice(ACTIVITY, size=users, p=share)
    if interactions is not None:  # exactly `interactions`: drop the users past it, trim the last one
        ends = np.cumsum(activity)
        keep = int(np.searchsorted(ends, interactions)) + 1
        activity = activity[:keep]
        activity[-1] -= int(ends[keep - 1] - interactions)
    total = int(activity.sum())
    n_items = max(200, total // 20)
    popularity = np.arange(1, n_items + 1, dtype=float) ** -0.9
    item_of_rank = rng.permutation(n_items) + 1
    user = np.repeat(np.arange(1, len(activity) + 1), activity)
    item = item_of_rank[np.searchsorted(np.cumsum(popularity) / popularity.sum(), rng.random(total))]
    times = rng.uniform(0, 2 * 365 * 86400, total).round()
    os.makedirs(folder + ".tmp", exist_ok=True)
    pd.DataFrame({"user_id:token": user, "item_id:token": item, "timestamp:float": times}).to_csv(
        os.path.join(folder + ".tmp", f"{name}.inter"), sep="\t", index=False
    )
    type_share = 0.7 ** np.arange(types)
    item_type = rng.choice(types, size=n_items, p=type_share / type_share.sum())
    words = np.array(vocabulary())
    word_share = np.arange(1, VOCABULARY + 1, dtype=float) ** -1.1
    lengths = rng.integers(2, 7, n_items)
    picks = np.searchsorted(np.cumsum(word_share) / word_share.sum(), rng.random(int(lengths.sum())))
    titles = [" ".join(t) for t in np.split(words[picks], np.cumsum(lengths)[:-1])]
    pd.DataFrame(
        {"item_id:token": np.arange(1, n_items + 1), "item_type:token": [f"type{t}" for t in item_type], "title:token_seq": titles}
    ).to_csv(os.path.join(folder + ".tmp", f"{name}.item"), sep="\t", index=False)
    os.replace(folder + ".tmp", folder)
    return folder


def build_encoder(path: str = ENCODER, dim: int = 64, seed: int = 0) -> str:
    """Save a StaticEmbedding sentence-transformers model over the benchmark's vocabulary to ``path``."""
    if os.path.isfile(os.path.join(path, "modules.json")):
        return path
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    ids = {"[UNK]": 0, "[PAD]": 1}
    for word in vocabulary():
        ids[word] = len(ids)
    tokenizer = Tokenizer(models.WordLevel(vocab=ids, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    weights = torch.randn(len(ids), dim, generator=torch.Generator().manual_seed(seed))
    SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu").save(path)
    return path


# --------------------------------------------------------------------------------------------
# One case (in its own process; with 2 processes, in each spawned rank)


def settings(case: dict) -> dict:
    """The run's config: RecBole's RS 8:1:1 time-ordered user split, full ranking, model defaults."""
    return {
        "data_path": DATA,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "item_type", "title"]},
        "item_type_field": "item_type",
        "text_fields": ["title"],
        "text_encoder": ENCODER,
        "text_batch_size": 4096,
        "cache_dir": os.path.join(CACHE, "runs", case["dataset"]),  # the foundation row writes, GFM rows read
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"},
        "epochs": 1,
        "state": "ERROR",
        "show_progress": False,
        "checkpoint_dir": os.path.join(CACHE, "saved"),
        "results_dir": "",
        "per_type_eval": False,
        "foundation": {"epochs": 1, "eval_step": 0, **(USERS_CASE_FOUNDATION if case.get("users_asked") else {})},
        "use_gpu": False,
        **MODEL_SETTINGS.get(case["model"], {}),
    }


class FirstSteps:
    """The first ``steps`` batches of a train loader, with the attributes RecBole's Trainer reads."""

    def __init__(self, loader, steps: int):
        self.loader, self.steps = loader, steps

    def __iter__(self):
        return islice(iter(self.loader), self.steps)

    def __len__(self) -> int:
        return min(self.steps, len(self.loader))

    def __getattr__(self, name):  # shuffle, sampler (set_epoch), dataset ...
        return getattr(self.loader, name)


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def train_epoch(row: dict, trainer, loader, max_steps: int | None) -> None:
    """One epoch of RecBole's Trainer (its first ``max_steps`` steps, extrapolated) into ``row``."""
    steps = len(loader)
    run = min(steps, max_steps or steps)
    start = time.perf_counter()
    trainer._train_epoch(FirstSteps(loader, run), 0)
    row.update(steps_per_epoch=steps, steps_run=run, epoch_s=(time.perf_counter() - start) * steps / run, rss_epoch_mb=rss_mb())


def measure(case: dict, local_rank: int | None = None, plan=None) -> dict:
    """Time the pipeline's steps for ``case`` in this process (see the module doc)."""
    import torch

    torch.set_num_threads(plan.threads if plan else case["threads"])
    from recbole.data.dataloader import FullSortEvalDataLoader
    from recbole.utils import ModelType, init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.data.graph import build_cointeraction_graph
    from recbole_gfm.data.protocol import data_preparation
    from recbole_gfm.data.text import encode_texts, item_text_embeddings
    from recbole_gfm.foundation.store import artifact_dir, foundation_config, read_cached, save_foundation
    from recbole_gfm.foundation.trainer import foundation_checkpoint
    from recbole_gfm.registry import create_dataset, get_trainer, training_data
    from recbole_gfm.run.inputs import prepare_inputs
    from recbole_gfm.run.launch import rank0_first, single_process_view
    from recbole_gfm.run.stages import Split

    row: dict = {}
    foundation_row = case["model"] == FOUNDATION
    model_name = "GFM" if foundation_row else case["model"]
    config = Config(model_name, case["dataset"], config_dict=settings(case) | (plan.settings(local_rank) if plan else {}))
    init_seed(config["seed"], config["reproducibility"])
    row["rss_start_mb"] = rss_mb()
    start = time.perf_counter()
    data = create_dataset(config)
    users_per_batch = max(1, min(EVAL_USERS_PER_BATCH, SCORES_PER_EVAL_BATCH // data.item_num))
    # RecBole's eval_batch_size counts scores for general models, sequences for sequential ones
    config["eval_batch_size"] = users_per_batch * (1 if config["MODEL_TYPE"] == ModelType.SEQUENTIAL else data.item_num)
    train_data, valid_data, _ = data_preparation(config, data)
    row.update(users=data.user_num - 1, items=data.item_num - 1, interactions=len(data.inter_feat))
    row.update(data_s=time.perf_counter() - start, rss_data_mb=rss_mb())

    if foundation_row:  # the HGNN of GFM's foundation: text, graph, one epoch, the exported artifact
        fconfig = foundation_config(single_process_view(config))
        texts = list(train_data.dataset.item_texts())[1:]
        start = time.perf_counter()
        encode_texts(texts, model=ENCODER, batch_size=4096, device="cpu", cache_dir=None, show_progress=False)
        row["text_s"] = time.perf_counter() - start
        start = time.perf_counter()
        graph = build_cointeraction_graph(fconfig, train_data.dataset)  # the HGNN and its link loader read it
        row.update(graph_s=time.perf_counter() - start, graph_edges=int(graph.edge_index.shape[1]), rss_graph_mb=rss_mb())
        init_seed(fconfig["seed"], fconfig["reproducibility"])
        start = time.perf_counter()
        model = fconfig.model_class(fconfig, train_data.dataset, text=item_text_embeddings(fconfig, train_data.dataset), graph=graph)
        row.update(model_s=time.perf_counter() - start, rss_model_mb=rss_mb())
        loader = training_data(fconfig, train_data, graph=graph)
        train_epoch(row, get_trainer(fconfig)(fconfig, model), loader, case["foundation_steps"])
        start = time.perf_counter()
        model.eval()
        save_foundation(
            fconfig, train_data.dataset, model.item_embeddings(), model.encoder, model.encoder_args,
            checkpoint=foundation_checkpoint(fconfig, valid_data),
        )  # fmt: skip
        row.update(export_s=time.perf_counter() - start, peak_rss_mb=rss_mb())
        return row

    with rank0_first(config):
        foundation = None
        if model_name == "GFM":  # the foundation row made the artifact: reading it is not timed as training
            fconfig = foundation_config(single_process_view(config))
            path = artifact_dir(fconfig, train_data.dataset, foundation_checkpoint(fconfig, valid_data))
            foundation = read_cached(path)
            if foundation is None:
                raise RuntimeError(f"no foundation artifact {path}: run the {FOUNDATION} row first (--fresh)")
            config["foundation_path"] = path
        inputs = prepare_inputs(config, Split(train_data, valid_data, None, None), foundation)
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        start = time.perf_counter()
        model = config.model_class(config, train_data.dataset, **inputs).to(config["device"])
        row["model_s"] = time.perf_counter() - start
        if model_name == "LightGCN":  # its normalised adjacency is built in the constructor
            row["graph_s"] = row["model_s"]
    row["rss_model_mb"] = rss_mb()
    trainer = get_trainer(config)(config, model)
    train_epoch(row, trainer, training_data(config, train_data), case["max_steps"])

    dataset = valid_data._dataset
    users = torch.unique(dataset.inter_feat[dataset.uid_field])
    picked = users[torch.randperm(len(users), generator=torch.Generator().manual_seed(0))[: case["eval_users"]]]
    sample = dataset.copy(dataset.inter_feat[torch.isin(dataset.inter_feat[dataset.uid_field], picked)])
    sample_data = FullSortEvalDataLoader(config, sample, valid_data._sampler, shuffle=False)
    start = time.perf_counter()
    result = trainer.evaluate(sample_data, load_best_model=False)
    row.update(eval_s=time.perf_counter() - start, eval_users=len(picked), valid_users=len(users), rss_eval_mb=rss_mb())
    row["eval_all_s"] = row["eval_s"] * len(users) / len(picked)
    row["valid_ndcg@10"] = float(result["ndcg@10"])
    row["peak_rss_mb"] = rss_mb()
    return row


def _rank(local_rank: int, case: dict, plan, outbox: str) -> None:
    row = measure(case, local_rank, plan)
    with open(os.path.join(outbox, f"{local_rank}.json"), "w") as f:
        json.dump(row, f)


def run_case(case: dict) -> dict:
    """Measure ``case`` here (one process) or in ``case['nproc']`` spawned ranks."""
    build_encoder()
    if case["model"] == FOUNDATION:
        shutil.rmtree(settings(case)["cache_dir"], ignore_errors=True)  # a fresh foundation (and text cache)
    if case["nproc"] == 1:
        row = measure(case)
        row.update(train_peak_mb=row["rss_epoch_mb"], peak_rss_total_mb=row["peak_rss_mb"])
        return row
    import torch.multiprocessing

    from recbole_gfm.run.launch import Launch

    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    plan = Launch(case["nproc"], case["nproc"], "localhost", port, 0, threads=max(1, case["threads"] // case["nproc"]))
    with tempfile.TemporaryDirectory() as outbox:
        torch.multiprocessing.spawn(_rank, args=(case, plan, outbox), nprocs=case["nproc"], join=True)
        ranks = [json.load(open(os.path.join(outbox, f"{r}.json"))) for r in range(case["nproc"])]
    row = ranks[0]  # rank 0 evaluated
    row["train_peak_mb"] = max(r["rss_epoch_mb"] for r in ranks)
    row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ranks)
    row["peak_rss_total_mb"] = round(sum(r["peak_rss_mb"] for r in ranks), 1)
    return row


# --------------------------------------------------------------------------------------------
# The benchmark


def fit_exponent(sizes: list[float], values: list[float]) -> float | None:
    """b of values ~ a * sizes^b, least squares in log-log; None with fewer than two sizes."""
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if v and v > 0]
    if len(points) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


COLUMNS = (
    "| data | model | procs | users | items | interactions | data s | graph s | text s | epoch s | steps run / epoch "
    "| export s | eval s (users) | eval all users s | training peak RSS MB | peak RSS MB (all ranks) | valid NDCG@10 |"
)


def report(rows: list[dict], args) -> str:
    info, load = machine(), " ".join(open("/proc/loadavg").read().split()[:3])
    described = f"{info['nproc']} cores ({info['cpu']}), {info['ram_gb']} GB RAM, load average {load} at the end"
    lines = [f"machine: {described}; torch threads per case: {args.threads} (shared by the ranks)", "", COLUMNS, "|" + "---|" * 17]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['model']} | {r['nproc']} | error: {r['error']} |" + " |" * 13)
            continue
        ndcg = r.get("valid_ndcg@10")
        evaluated = f"{fmt(r['eval_s'])} ({fmt(r['eval_users'])})" if "eval_s" in r else "-"
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['nproc']} | {fmt(r['users'])} | {fmt(r['items'])} | {fmt(r['interactions'])} "
            f"| {fmt(r['data_s'])} | {fmt(r.get('graph_s'))} | {fmt(r.get('text_s'))} | {fmt(r['epoch_s'])} "
            f"| {r['steps_run']} / {r['steps_per_epoch']} | {fmt(r.get('export_s'))} "
            f"| {evaluated} | {fmt(r.get('eval_all_s'))} | {fmt(r['train_peak_mb'], 0)} "
            f"| {fmt(r['peak_rss_mb'], 0)} ({fmt(r['peak_rss_total_mb'], 0)}) | {'-' if ndcg is None else f'{ndcg:.4f}'} |"
        )
    lines += [
        "",
        "Exponents b of `y ~ interactions^b` (least squares on log-log over the sizes above; the size sweep only):",
        "",
        "| model | procs | interactions | epoch time | training peak RSS above start | training peak RSS | peak RSS | graph build |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sweep = [r for r in rows if "error" not in r and not r["users_asked"]]
    for model in (*MODELS, FOUNDATION):
        for nproc in sorted({r["nproc"] for r in sweep}):
            group = sorted((r for r in sweep if r["model"] == model and r["nproc"] == nproc), key=lambda r: r["interactions"])
            if len(group) < 2:
                continue
            n = [r["interactions"] for r in group]
            exps = [fit_exponent(n, [r.get(key) for r in group]) for key in ("epoch_s", "train_growth_mb", "train_peak_mb", "peak_rss_mb", "graph_s")]
            lines.append(
                f"| {model} | {nproc} | {fmt(n[0])} - {fmt(n[-1])} | " + " | ".join("-" if e is None else f"{e:.2f}" for e in exps) + " |"
            )
    return "\n".join(lines)


def cases(args) -> list[dict]:
    sets = [(dataset_name(int(float(s)), args.types), int(float(s)), args.types, None) for s in args.sizes]
    if args.users_case:
        sets.append((dataset_name(None, 10, args.users_case), None, 10, args.users_case))
    out = []
    for name, interactions, types, users in sets:
        rows = [(m, p) for m in (["GFM"] if users else args.models) for p in ([1] if users else args.nproc)]
        if any(m == "GFM" for m, _ in rows):  # its foundation first, trained by one process
            rows.insert(next(k for k, (m, _) in enumerate(rows) if m == "GFM"), (FOUNDATION, 1))
        for model, nproc in rows:
            out.append({
                "label": f"{name}__{model}__p{nproc}", "dataset": name, "model": model, "nproc": nproc,
                "interactions_asked": interactions, "types": types, "users_asked": users,
                "threads": args.threads, "max_steps": args.max_steps, "eval_users": args.eval_users,
                "foundation_steps": args.foundation_steps or args.max_steps,
            })  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["1e5", "1e6", "1e7"], help="interactions per set (none: only --users-case)")
    parser.add_argument("--types", type=int, default=5, help="item types of the size sweep (2 to 10)")
    parser.add_argument("--users-case", type=int, default=None, help="also GFM on a set of this many users and 10 types")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--nproc", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads per case, shared by its ranks")
    parser.add_argument("--max-steps", type=int, default=None, help="time this many training steps, extrapolated to the epoch")
    parser.add_argument("--foundation-steps", type=int, default=None, help="--max-steps of the foundation's HGNN (default: --max-steps)")
    parser.add_argument("--eval-users", type=int, default=10000, help="validation users ranked against the full catalogue")
    parser.add_argument("--fresh", action="store_true", help="run the cases again even if stored")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # child mode: one case as JSON
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    if not 2 <= args.types <= 10:
        parser.error("--types must be in 2 .. 10")
    os.makedirs(STORE, exist_ok=True)
    build_encoder()
    todo = cases(args)
    code = fingerprint(result_code_fingerprint(), file_fingerprint(__file__), package_versions())
    stored = {c["label"]: os.path.join(STORE, f"{c['label']}__{fingerprint(c, code)}.json") for c in todo}
    rerun = {c["label"] for c in todo if args.fresh or not os.path.isfile(stored[c["label"]])}
    for case in todo:  # a GFM row that runs needs its foundation row's artifact: run that row too
        if case["model"] == "GFM" and case["label"] in rerun:
            rerun.add(f"{case['dataset']}__{FOUNDATION}__p1")
    rows = []
    for case in todo:
        generate(case["dataset"], case["interactions_asked"], case["types"], case["users_asked"])
        if case["label"] not in rerun:
            rows.append(read_json(stored[case["label"]]))
            print(f"{case['label']}: stored", file=sys.stderr, flush=True)
            continue
        started = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            tail = (out.stderr.strip().splitlines() or ["killed"])[-1]
            row = {**case, "error": tail[:200]}
            with open(os.path.join(STORE, f"{case['label']}.stderr.log"), "w") as f:  # the whole story, for a post-mortem
                f.write(out.stderr)
        else:
            row = {**case, **json.loads(out.stdout.strip().splitlines()[-1]), "code": code}
            row["train_growth_mb"] = row["train_peak_mb"] - row["rss_start_mb"]
            write_json(stored[case["label"]], row)
        rows.append(row)
        print(f"{case['label']}: {time.perf_counter() - started:.0f} s {json.dumps(row)}", file=sys.stderr, flush=True)
    # the report also shows the stored cases of these sets that this command did not ask for (other --nproc ...)
    labels, sets = {r["label"] for r in rows}, {c["dataset"] for c in todo}
    for name in sorted(os.listdir(STORE)):
        row = read_json(os.path.join(STORE, name)) if name.endswith(".json") else {}
        if row.get("code") == code and row["dataset"] in sets and row["label"] not in labels:
            rows.append(row)
    first = {}
    for k, c in enumerate(todo):
        first.setdefault(c["dataset"], k)
    rows.sort(key=lambda r: (first[r["dataset"]], ROW_ORDER.index(r["model"]), r["nproc"]))
    print(f"command: `{' '.join(['.venv/bin/python', 'benchmarks/scaling.py', *sys.argv[1:]])}`\n")
    print(f"versions: {package_versions()}\n")
    print(report(rows, args))


if __name__ == "__main__":
    main()
