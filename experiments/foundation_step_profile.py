"""Where does one foundation (HGNN) training step go, and what in it grows with the catalogue? (issue 29)

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python experiments/foundation_step_profile.py \
        [--sizes 1e5 1e6] [--types 5] [--users-case 1000000] [--steps 10] [--profile-steps 5] [--compare REF]
        [--max-steps-per-epoch N]

Builds the synthetic sets of ``benchmarks/scaling.py`` (its :func:`generate`, its cheap static text
encoder; ``--users-case U``: U users and 10 types with the benchmark's USERS_CASE_FOUNDATION
settings), then, as the pipeline does (``scaling.measure`` / ``run.inputs.train_foundation``): the
GFM config, RecBole's split, the foundation config, the HGNN model and its LinkLoader
(``training_data``), and RecBole's optimizer (``HGNNTrainer``). It then times ``--steps`` training
steps, split into collation (the LinkLoader's ``collate_fn``: edges, negatives, neighbour sampling),
forward + loss, backward, optimizer step, and reports the blocks' sizes (nodes, edges per layer);
then runs ``--profile-steps`` more steps under cProfile and prints the functions by cumulative and
by own time. ``--compare REF``: the sampler and encoder of git commit REF (``git show``) and this
checkout's, alternately on the same batches in one process (the machine's load hits both alike),
with their CPU times and whether the loss and every gradient are equal. One torch thread; wall and process CPU time (the machine is shared: CPU time is the
steadier of the two). Data and caches go to ``--work`` (default ``.cache/foundation-profile``).
Prints Markdown.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import subprocess
import types
import os
import platform
import pstats
import re
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), {mem / 2**20:.1f} GB RAM, {platform.platform()}, load average {load}"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(scaling, interactions: int | None, types: int, users: int | None, foundation: dict | None = None):
    """(HGNN config, model, LinkLoader, optimizer, sizes) of one synthetic set, as the pipeline builds them."""
    import torch
    from recbole.utils import init_seed

    from recbole_gfm.config import Config
    from recbole_gfm.foundation.store import foundation_config
    from recbole_gfm.registry import get_trainer, training_data
    from recbole_gfm.run.inputs import build_with_inputs
    from recbole_gfm.run.launch import single_process_view
    from recbole_gfm.run.stages import prepare_data

    name = scaling.dataset_name(interactions, types, users)
    scaling.generate(name, interactions, types, users)
    case = {"dataset": name, "model": "GFM", "users_asked": users}
    settings = scaling.settings(case)
    settings["foundation"] = {**settings["foundation"], **(foundation or {})}
    config = Config("GFM", name, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    torch.use_deterministic_algorithms(config["reproducibility"], warn_only=True)
    start = time.perf_counter()
    split = prepare_data(config, evaluate_test=False)
    train_data = split.train_data
    data_s = time.perf_counter() - start
    fconfig = foundation_config(single_process_view(config))
    start = time.perf_counter()
    model = build_with_inputs(fconfig, split)  # seeded; text vectors and the co-interaction graph prepared first
    model_s = time.perf_counter() - start
    loader = training_data(fconfig, train_data, graph=model.graph)
    trainer = get_trainer(fconfig)(fconfig, model)
    graph = model.graph
    sizes = {
        "set": name,
        "interactions": len(train_data.dataset.inter_feat),
        "items": graph.num_items - 1,
        "edges": int(graph.edge_index.shape[1]),
        "relations": graph.num_relations,
        "steps_per_epoch": len(loader),
        "batch": loader._batch_size,  # the epoch-capped batch (RecBole keeps it private)
        "fanouts": list(fconfig["fanouts"]),
        "negatives": fconfig["num_negatives"],
        "data_s": data_s,
        "model_s": model_s,
    }
    return fconfig, model, loader, trainer.optimizer, sizes


def run_steps(model, batches, optimizer, steps: int, clock: dict | None = None, shapes: list | None = None) -> None:
    """``steps`` training steps as RecBole's Trainer runs them (``_train_epoch``), timed into ``clock``."""
    model.train()
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(batches)  # collate_fn: edges, negatives, neighbour sampling
        t1 = time.perf_counter()
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if clock is not None:
            for key, value in zip(("collate", "forward", "backward", "step"), (t1 - start, t2 - t1, t3 - t2, t4 - t3)):
                clock[key] += value
        if shapes is not None:
            shapes.append([len(batch.nodes)] + [x for b in batch.blocks for x in (len(b.dst), len(b.src), b.edge_index.shape[1])])


def module_at(ref: str, path: str, name: str):
    """The module ``path`` of git commit ``ref`` of this repository, imported as ``name``."""
    source = subprocess.run(["git", "-C", ROOT, "show", f"{ref}:{path}"], capture_output=True, text=True, check=True).stdout
    module = types.ModuleType(name)
    module.__file__ = f"{ref}:{path}"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def compare(ref: str, model, loader, steps: int) -> dict:
    """CPU seconds of collation and of forward + backward, REF's code against this checkout's, alternately."""
    import torch

    from recbole_gfm.data import link_loader

    old_loader = module_at(ref, "recbole_gfm/data/link_loader.py", "ref_link_loader")
    old_encoders = module_at(ref, "recbole_gfm/encoders.py", "ref_encoders")
    new_encoder = model.encoder
    old_encoder = old_encoders.HGNNEncoder(**model.encoder_args)
    old_encoder.load_state_dict(new_encoder.state_dict())
    variants = {"ref": (old_loader.sample_blocks, old_encoder), "this": (link_loader.sample_blocks, new_encoder)}
    clock = {f"{v} {k}": 0.0 for v in variants for k in ("collate", "train")}
    equal = True
    batch_size = loader.step
    for k in range(steps):
        index = list(range(k * batch_size, min((k + 1) * batch_size, loader.sample_size)))
        results = {}
        for name, (sample_blocks, encoder) in variants.items():
            link_loader.sample_blocks = sample_blocks  # what collate_fn calls
            model.encoder = encoder
            start = time.process_time()
            batch = loader.collate_fn(index)
            middle = time.process_time()
            loss = model.calculate_loss(batch)
            grads = torch.autograd.grad(loss, list(encoder.parameters()))
            end = time.process_time()
            clock[f"{name} collate"] += middle - start
            clock[f"{name} train"] += end - middle
            results[name] = (loss.detach(), grads)
            del batch, loss, grads
        (a, ga), (b, gb) = results["ref"], results["this"]
        equal &= bool(torch.equal(a, b)) and all(torch.equal(x, y) for x, y in zip(ga, gb))
    link_loader.sample_blocks = variants["this"][0]
    model.encoder = new_encoder
    return {**{key: value / steps for key, value in clock.items()}, "equal": equal}


def profile_table(profile: cProfile.Profile, key: str, lines: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats(key).print_stats(lines)
    text = out.getvalue()
    body = text[text.index("   ncalls") :] if "   ncalls" in text else text
    text = "\n".join(line.rstrip() for line in body.strip().splitlines()).replace(ROOT + "/", "")
    return "```\n" + re.sub(r"\S*/site-packages/", "site-packages/", text) + "\n```"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["1e5", "1e6"], help="interactions per set")
    parser.add_argument("--types", type=int, default=5)
    parser.add_argument("--users-case", type=int, default=None, help="also the set of this many users and 10 types")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after one warm-up step)")
    parser.add_argument("--profile-steps", type=int, default=5, help="steps under cProfile (0: none)")
    parser.add_argument("--lines", type=int, default=25, help="rows of each cProfile table")
    parser.add_argument("--compare", default=None, help="also time git commit REF's sampler and encoder against this checkout's")
    parser.add_argument("--compare-steps", type=int, default=6, help="batches of --compare")
    parser.add_argument("--max-steps-per-epoch", type=int, default=None, help="the foundation's step cap (0: none; default: HGNN's)")
    parser.add_argument("--work", default=os.path.join(ROOT, ".cache", "foundation-profile"), help="data and caches")
    args = parser.parse_args()

    os.environ["RECBOLE_GFM_SCALING_ROOT"] = args.work  # scaling.py's data, encoder and caches go there
    sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]
    import torch

    torch.set_num_threads(1)
    import scaling  # noqa: E402  (benchmarks/scaling.py)

    scaling.build_encoder()
    sets = [(int(float(s)), args.types, None) for s in args.sizes]
    if args.users_case:
        sets.append((None, 10, args.users_case))

    print("# One foundation (HGNN) training step: where the time goes\n")
    print(f"command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} "
          f"{' '.join(['.venv/bin/python', 'experiments/foundation_step_profile.py', *sys.argv[1:]])}`\n")
    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} thread\n")
    rows, profiles, comparisons = [], [], []
    cap = {} if args.max_steps_per_epoch is None else {"max_steps_per_epoch": args.max_steps_per_epoch or None}
    for interactions, n_types, users in sets:
        fconfig, model, loader, optimizer, sizes = build(scaling, interactions, n_types, users, cap)
        batches = iter(loader)
        run_steps(model, batches, optimizer, 1)  # warm-up (first-call allocations)
        clock = {"collate": 0.0, "forward": 0.0, "backward": 0.0, "step": 0.0}
        shapes: list = []
        start, cpu = time.perf_counter(), time.process_time()
        run_steps(model, batches, optimizer, args.steps, clock, shapes)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        step_s = wall / args.steps
        mean = [sum(s[k] for s in shapes) / len(shapes) for k in range(len(shapes[0]))]
        rows.append({**sizes, **{k: v / args.steps for k, v in clock.items()}, "step_s": step_s,
                     "epoch_s": step_s * sizes["steps_per_epoch"], "cpu_s": cpu / args.steps, "shape": mean, "rss_mb": rss_mb()})  # fmt: skip
        if args.profile_steps:
            profile = cProfile.Profile()
            profile.enable()
            run_steps(model, batches, optimizer, args.profile_steps)
            profile.disable()
            profiles.append((sizes["set"], profile))
        if args.compare:
            comparisons.append((sizes["set"], compare(args.compare, model, loader, args.compare_steps)))
        print(f"{sizes['set']}: {step_s:.3f} s a step", file=sys.stderr, flush=True)
        del model, loader, optimizer, batches

    print("| set | train interactions | items | graph edges | relations | batch | fan-outs | steps / epoch | "
          "collate s | forward s | backward s | optimizer s | step s | step CPU s | epoch s (extrapolated) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['interactions']:,} | {r['items']:,} | {r['edges']:,} | {r['relations']} | {r['batch']} | "
              f"{r['fanouts']} | {r['steps_per_epoch']} | {r['collate']:.3f} | {r['forward']:.3f} | {r['backward']:.3f} | "
              f"{r['step']:.3f} | **{r['step_s']:.3f}** | {r['cpu_s']:.3f} | {r['epoch_s']:,.0f} | {r['rss_mb']:,.0f} |")
    print("\nBlocks of a step (means over the timed steps; layer 1 is the outer hop, layer 2 embeds the batch's nodes):\n")
    print("| set | batch nodes (anchors, positives, negatives) | layer 1 dst | layer 1 src | layer 1 edges | "
          "layer 2 dst | layer 2 src | layer 2 edges |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | " + " | ".join(f"{x:,.0f}" for x in r["shape"]) + " |")
    if len(rows) > 1:
        for r in rows[1:]:
            print(f"\nstep-time ratio {r['set']} / {rows[0]['set']}: **{r['step_s'] / rows[0]['step_s']:.2f}** (wall), "
                  f"{r['cpu_s'] / rows[0]['cpu_s']:.2f} (CPU)")
    if comparisons:
        print(f"\nCommit {args.compare} against this checkout, alternately on the same {args.compare_steps} batches "
              "(CPU s a step; train = forward, loss and backward, no optimizer step):\n")
        print("| set | collate ref | collate this | ratio | train ref | train this | ratio | step ref | step this | ratio | loss and gradients equal |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, c in comparisons:
            old, new = c["ref collate"] + c["ref train"], c["this collate"] + c["this train"]
            print(f"| {name} | {c['ref collate']:.3f} | {c['this collate']:.3f} | {c['this collate'] / c['ref collate']:.2f} | "
                  f"{c['ref train']:.3f} | {c['this train']:.3f} | {c['this train'] / c['ref train']:.2f} | "
                  f"{old:.3f} | {new:.3f} | **{new / old:.2f}** | {'yes' if c['equal'] else 'NO'} |")
    for name, profile in profiles:
        print(f"\n## cProfile, {name}, {args.profile_steps} steps: by cumulative time\n")
        print(profile_table(profile, "cumulative", args.lines))
        print(f"\n## cProfile, {name}, {args.profile_steps} steps: by own time\n")
        print(profile_table(profile, "tottime", args.lines))


if __name__ == "__main__":
    main()
