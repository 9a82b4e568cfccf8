"""Convert Amazon Reviews categories into one multi-type RecBole atomic dataset.

    python -m recbole_gfm.data.amazon --category Grocery=reviews.json.gz,meta.json.gz \\
        --category Kitchen=ratings_Home_and_Kitchen.csv --out dataset/amazon-gk \\
        [--user-core 5] [--item-core 5] [--min-user-types 2]

Each category becomes an item type; users are shared across categories by their reviewer id.
Review files, gzipped or not, in any of the public formats (detected from the first line):

* 2014 ratings-only CSV, no header: ``user,item,rating,timestamp`` (seconds);
* 2018 JSON lines: ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime`` (seconds);
* 2023 JSON lines: ``user_id``, ``parent_asin``, ``rating``, ``timestamp`` (milliseconds).

Metadata files (optional, JSON lines; 2014's Python-literal lines also read) give ``title`` and
``description`` (a list or a string) per ``asin`` (2014 / 2018) or ``parent_asin`` (2023).

Output ``NAME.inter`` (user_id, item_id, rating, timestamp in seconds) and ``NAME.item``
(item_id, item_type, title, description; text on one line: tabs, line breaks and other control
characters become spaces). A user's repeated review of an item is kept once (the
earliest); an item listed in several categories keeps the first one given. Filters, repeated until
nothing changes: ``--min-user-types`` (users who reviewed in at least N categories), then
``--user-core`` / ``--item-core`` (k-core). Files are read line by line; only compact integer
columns of the interactions are kept in memory.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import io
import json
import logging
import os
import re
from array import array
from dataclasses import dataclass
from logging import getLogger
from typing import Iterator, TextIO

import numpy as np
import pandas as pd

from recbole_gfm.config import ConfigError
from recbole_gfm.data.prepare import write_dataset


class AmazonFormatError(ConfigError):
    """A malformed input line; the message names the file and the line."""


# review format -> (user key, item key, rating key, timestamp key, timestamp units per second)
REVIEW_FORMATS = {
    "2018": ("reviewerID", "asin", "overall", "unixReviewTime", 1),
    "2023": ("user_id", "parent_asin", "rating", "timestamp", 1000),
}
CSV_FIELDS = ("user", "item", "rating", "timestamp")
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")  # whitespace and control characters (tab, CR, LF, NUL ...)


@dataclass(frozen=True)
class Category:
    name: str
    reviews: str
    meta: str | None = None


def parse_category(value: str) -> Category:
    """``NAME=PATH[,META_PATH]`` from the command line."""
    name, sep, paths = value.partition("=")
    parts = [p for p in paths.split(",") if p]
    if not sep or not name or not 1 <= len(parts) <= 2:
        raise ConfigError(f"--category '{value}': expected NAME=REVIEWS_PATH[,META_PATH].")
    if re.search(r"\s", name):
        raise ConfigError(f"--category '{value}': the name becomes an item type token; use no spaces.")
    for path in parts:
        if not os.path.isfile(path):
            raise ConfigError(f"--category {name}: file '{path}' does not exist.")
    return Category(name, parts[0], parts[1] if len(parts) == 2 else None)


def open_text(path: str) -> TextIO:
    """A text stream over ``path``, gunzipped when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


def _json_record(line: str, path: str, lineno: int) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        try:  # the 2014 metadata files hold Python literals, not JSON
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            raise AmazonFormatError(f"{path}, line {lineno}: not valid JSON ({e.msg}).") from None
    if not isinstance(record, dict):
        raise AmazonFormatError(f"{path}, line {lineno}: expected a JSON object, got {type(record).__name__}.")
    return record


def _review_format(record: dict, path: str, lineno: int) -> str:
    for name, (user, item, *_) in REVIEW_FORMATS.items():
        if user in record and item in record:
            return name
    raise AmazonFormatError(
        f"{path}, line {lineno}: a JSON review without reviewerID/asin (2018) or user_id/parent_asin (2023); "
        f"its keys are {', '.join(sorted(record))}."
    )


def _number(value, field: str, path: str, lineno: int) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AmazonFormatError(f"{path}, line {lineno}: field '{field}' is {value!r}, not a number.") from None


def iter_reviews(path: str) -> Iterator[tuple[str, str, float, int]]:
    """``(user, item, rating, timestamp in seconds)`` per review line of any supported format."""
    fmt = None
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            if fmt is None:
                fmt = "json" if line.startswith("{") else "2014"
            if fmt == "2014":
                row = next(csv.reader([line]))
                if len(row) != 4:
                    raise AmazonFormatError(
                        f"{path}, line {lineno}: {len(row)} comma-separated fields; the 2014 ratings CSV "
                        f"has 4 ({','.join(CSV_FIELDS)}, no header)."
                    )
                user, item, rating, stamp = row
                stamp = _number(stamp, "timestamp", path, lineno)
                yield user, item, _number(rating, "rating", path, lineno), int(stamp)
                continue
            record = _json_record(line, path, lineno)
            if fmt == "json":
                fmt = _review_format(record, path, lineno)
            user_key, item_key, rating_key, time_key, per_second = REVIEW_FORMATS[fmt]
            missing = [k for k in (user_key, item_key, rating_key, time_key) if record.get(k) in (None, "")]
            if missing:
                raise AmazonFormatError(
                    f"{path}, line {lineno}: field {', '.join(map(repr, missing))} missing from a {fmt} review."
                )
            stamp = _number(record[time_key], time_key, path, lineno)
            yield (
                str(record[user_key]),
                str(record[item_key]),
                _number(record[rating_key], rating_key, path, lineno),
                int(stamp // per_second),
            )


def clean_text(value, max_words: int) -> str:
    """A title or description (string or list of strings) as one line of at most ``max_words`` words.

    HTML tags, whitespace runs and control characters (tabs, line breaks, NUL ...) become one space,
    so the value cannot break an atomic file's line.
    """
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    if not isinstance(value, str):
        return ""
    words = _SPACE.sub(" ", _TAGS.sub(" ", value)).strip().split(" ")
    return " ".join(words[:max_words]) if words != [""] else ""


def iter_meta(path: str, wanted: set[str], max_words: int) -> Iterator[tuple[str, str, str]]:
    """``(item, title, description)`` for the metadata lines of wanted items."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            record = _json_record(line, path, lineno)
            item = record.get("parent_asin") or record.get("asin")
            if item is None:
                raise AmazonFormatError(f"{path}, line {lineno}: metadata without 'parent_asin' (2023) or 'asin'.")
            if item in wanted:
                yield item, clean_text(record.get("title"), max_words), clean_text(record.get("description"), max_words)


class _Ids(dict):
    """Token -> dense index, in order of first appearance."""

    def index(self, token: str) -> int:
        found = self.get(token)
        if found is None:
            found = self[token] = len(self)
        return found


def read_interactions(categories: list[Category]) -> tuple[pd.DataFrame, list[str], list[str], int]:
    """All reviews as integer columns (user, item, type, rating, timestamp); user and item tokens.

    The last value counts items found in more than one category (they keep the first).
    """
    users, items = _Ids(), _Ids()
    item_type = array("i")
    typecodes = {"user": "q", "item": "q", "type": "i", "rating": "d", "timestamp": "q"}
    columns = {name: array(code) for name, code in typecodes.items()}
    conflicts: set[int] = set()
    for t, category in enumerate(categories):
        for user, item, rating, stamp in iter_reviews(category.reviews):
            i = items.index(item)
            if i == len(item_type):
                item_type.append(t)
            elif item_type[i] != t:
                conflicts.add(i)
            columns["user"].append(users.index(user))
            columns["item"].append(i)
            columns["type"].append(item_type[i])
            columns["rating"].append(rating)
            columns["timestamp"].append(stamp)
    frame = pd.DataFrame({k: np.frombuffer(v, dtype=v.typecode) for k, v in columns.items()})
    return frame, list(users), list(items), len(conflicts)


def filter_interactions(frame: pd.DataFrame, user_core: int, item_core: int, min_user_types: int) -> pd.DataFrame:
    """Earliest review per (user, item); then the type and k-core filters until nothing changes."""
    frame = frame.sort_values("timestamp", kind="stable").drop_duplicates(["user", "item"], keep="first")
    while True:
        size = len(frame)
        if min_user_types > 1:
            n_types = frame.groupby("user")["type"].transform("nunique")
            frame = frame[n_types >= min_user_types]
        if user_core > 1:
            frame = frame[frame.groupby("user")["user"].transform("size") >= user_core]
        if item_core > 1:
            frame = frame[frame.groupby("item")["item"].transform("size") >= item_core]
        if len(frame) == size:
            break
    if frame.empty:
        raise ConfigError("No interaction is left after filtering: lower --user-core / --item-core / --min-user-types.")
    order = np.lexsort((frame["timestamp"].to_numpy(), frame["user"].to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def type_statistics(frame: pd.DataFrame, names: list[str]) -> dict:
    """Items / interactions / users per type and users shared by each pair of types."""
    stats = {}
    for t, name in enumerate(names):
        rows = frame[frame["type"] == t]
        stats[name] = {
            "items": int(rows["item"].nunique()),
            "interactions": len(rows),
            "users": int(rows["user"].nunique()),
        }
    per_type = [set(frame.loc[frame["type"] == t, "user"]) for t in range(len(names))]
    shared = {
        f"{names[a]} & {names[b]}": len(per_type[a] & per_type[b])
        for a in range(len(names))
        for b in range(a + 1, len(names))
    }
    return {"types": stats, "shared_users": shared}


def convert(
    categories: list[Category],
    out: str,
    user_core: int = 0,
    item_core: int = 0,
    min_user_types: int = 1,
    max_words: int = 128,
) -> str:
    """Write the atomic dataset ``out/<name>.{inter,item}`` (name = last part of ``out``); its folder."""
    logger = getLogger()
    out = os.path.normpath(out)
    name = os.path.basename(out)
    if os.path.isfile(os.path.join(out, f"{name}.inter")):
        logger.info(f"{out} already exists: nothing to do (delete the folder to convert again).")
        return out
    names = [c.name for c in categories]
    if len(set(names)) != len(names):
        raise ConfigError(f"Category names must differ: {names}.")
    frame, user_tokens, item_tokens, conflicts = read_interactions(categories)
    if conflicts:
        logger.warning(f"{conflicts} items are reviewed in more than one category; each keeps the first given.")
    frame = filter_interactions(frame, user_core, item_core, min_user_types)

    kept = np.unique(frame["item"].to_numpy())
    item_type = frame.drop_duplicates("item").set_index("item")["type"]
    wanted = {item_tokens[i]: i for i in kept}
    texts: dict[int, tuple[str, str]] = {}
    for category in categories:
        if category.meta:
            for token, title, description in iter_meta(category.meta, wanted.keys() - texts.keys(), max_words):
                texts.setdefault(wanted[token], (title, description))
    no_text = sum(1 for i in kept if not any(texts.get(i, ("", ""))))
    if no_text:
        logger.warning(f"{no_text} of {len(kept)} items have no title or description in the metadata given.")

    token_of_user = np.array(user_tokens, dtype=object)
    token_of_item = np.array(item_tokens, dtype=object)
    files = {
        "inter": pd.DataFrame(
            {
                "user_id:token": token_of_user[frame["user"].to_numpy()],
                "item_id:token": token_of_item[frame["item"].to_numpy()],
                "rating:float": frame["rating"].map(lambda r: f"{r:g}"),
                "timestamp:float": frame["timestamp"],
            }
        ),
        "item": pd.DataFrame(
            {
                "item_id:token": token_of_item[kept],
                "item_type:token": [names[item_type[i]] for i in kept],
                "title:token_seq": [texts.get(i, ("", ""))[0] for i in kept],
                "description:token_seq": [texts.get(i, ("", ""))[1] for i in kept],
            }
        ),
    }
    stats = type_statistics(frame, names)
    manifest = {
        "dataset": name,
        "categories": [
            {"name": c.name, "reviews": os.path.basename(c.reviews), "meta": c.meta and os.path.basename(c.meta)}
            for c in categories
        ],
        "filters": {"user_core": user_core, "item_core": item_core, "min_user_types": min_user_types},
        "type_statistics": stats,
    }
    path = write_dataset(os.path.dirname(out) or ".", name, files, manifest)
    logger.info(f"Wrote {path}: {len(frame)} interactions, {len(kept)} items, {frame['user'].nunique()} users.")
    for type_name, row in stats["types"].items():
        logger.info(f"  {type_name}: {row['items']} items, {row['interactions']} interactions, {row['users']} users")
    for pair, n in stats["shared_users"].items():
        logger.info(f"  users shared by {pair}: {n}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--category", action="append", required=True, metavar="NAME=PATH[,META_PATH]")
    parser.add_argument("--out", required=True, help="dataset folder to write, e.g. dataset/amazon-gk")
    parser.add_argument("--user-core", type=int, default=0, help="keep users with at least this many interactions")
    parser.add_argument("--item-core", type=int, default=0, help="keep items with at least this many interactions")
    parser.add_argument("--min-user-types", type=int, default=1, help="keep users with reviews in >= N categories")
    parser.add_argument("--max-words", type=int, default=128, help="words kept of each title and description")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        categories = [parse_category(v) for v in args.category]
        convert(categories, args.out, args.user_core, args.item_core, args.min_user_types, args.max_words)
    except ConfigError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
