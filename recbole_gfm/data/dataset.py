"""MultiTypeDataset: RecBole's Dataset whose items have a type (podcast, audiobook ...) and a text.

Reads the usual atomic files; the ``.item`` file must hold the type field (``item_type_field``,
a ``token``) and may hold text fields (``text_fields``; ``~``: every token / token_seq item field
but the id and the type). Everything is checked at load, with errors naming the file, the field and
the fix. The text fields are turned into :meth:`MultiTypeDataset.item_texts` when the files are
read, then dropped from ``item_feat`` so training batches do not carry them; the type field stays
(remapped like any token field).

Type ids and texts are computed once per load and shared by the split copies RecBole makes
(``dataset.copy``); :meth:`MultiTypeDataset.type_statistics` counts the interactions of the copy
it is called on (e.g. the train split).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from recbole.data.dataset import Dataset
from recbole.utils import FeatureType, set_color

from recbole_gfm.config import ConfigError
from recbole_gfm.data.validate import DataError, read_header, validate_atomic_files

__all__ = ["DataError", "MultiTypeDataset"]


def _label(field: str) -> str:
    return field.replace("_", " ").strip().capitalize()


def _value_text(value: Any) -> str:
    """One raw field value (token, token_seq array, float) as text; '' when missing."""
    if isinstance(value, np.ndarray):
        return " ".join(_value_text(v) for v in value if _value_text(v))
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class MultiTypeDataset(Dataset):
    """A RecBole :class:`~recbole.data.dataset.Dataset` with item types and item texts.

    Config keys: ``item_type_field`` (token field of ``.item``), ``text_fields`` (list or ``~``),
    ``item_types`` (optional list of type names every one of which some item must have).
    """

    # ------------------------------------------------------------------ public API

    def item_type_names(self) -> list[str]:
        """The T type names, sorted; the index of a name is its type id."""
        return list(self._type_names)

    def item_type_ids(self) -> torch.LongTensor:
        """Type id (0..T-1) of each internal item id, shape [item_num]; -1 for the padding id 0."""
        return self._item_type_ids.clone()

    def item_type_id(self, name: str) -> int:
        """Type id of the type called ``name`` (its index in :meth:`item_type_names`).

        Raises :class:`DataError` naming the unknown type and the dataset's types.
        """
        try:
            return self._type_names.index(name)
        except ValueError:
            raise DataError(
                f"Unknown item type '{name}': the types in {self._item_path} (field '{self.type_field}', "
                f"item_type_field) are {', '.join(self._type_names)}. Use one of them."
            ) from None

    def item_texts(self) -> list[str]:
        """Text of each internal item id (length item_num); '' for the padding id 0."""
        return list(self._item_texts)

    def type_statistics(self) -> dict[str, dict]:
        """Items, interactions and users per type, and users shared by each pair of types.

        Returns ``{"types": {name: {"items", "interactions", "users"}},
        "shared_users": {a: {b: n}}}`` (symmetric, a != b), counted on this dataset's
        interactions (so on a split copy, on that split).
        """
        names, types = self._type_names, self._item_type_ids.numpy()
        n_types = len(names)
        users = self._column(self.uid_field)
        item_types = types[self._column(self.iid_field)]
        items = np.bincount(types[types >= 0], minlength=n_types)
        interactions = np.bincount(item_types, minlength=n_types)
        member = np.zeros((self.user_num, n_types), dtype=np.int64)
        member[users, item_types] = 1
        per_type_users = member.sum(axis=0)
        shared = member.T @ member
        return {
            "types": {
                name: {"items": int(items[t]), "interactions": int(interactions[t]), "users": int(per_type_users[t])}
                for t, name in enumerate(names)
            },
            "shared_users": {
                a: {b: int(shared[i, j]) for j, b in enumerate(names) if j != i} for i, a in enumerate(names)
            },
        }

    def __str__(self) -> str:
        stats = self.type_statistics()
        lines = [super().__str__(), set_color("Item types", "blue") + f" ({self.type_field}):"]
        for name, row in stats["types"].items():
            lines.append(
                f"    {name}: {row['items']} items, {row['interactions']} interactions, {row['users']} users"
            )
        pairs = [
            f"{a} & {b}: {n}" for a, row in stats["shared_users"].items() for b, n in row.items() if a < b
        ]
        if pairs:
            lines.append(set_color("Users shared by types", "blue") + ": " + ", ".join(pairs))
        return "\n".join(lines)

    # ------------------------------------------------------------------ loading

    def _get_field_from_config(self):
        super()._get_field_from_config()
        self.type_field = self.config["item_type_field"]
        if not self.type_field:
            raise ConfigError("item_type_field is empty: set it to the .item field holding the item type.")
        self._text_fields = self.config["text_fields"]
        if isinstance(self._text_fields, str):
            self._text_fields = [self._text_fields]
        self.update_config(self.config)

    @staticmethod
    def update_config(config) -> None:
        """Make ``config['load_col']`` / ``['unload_col']`` name the ``.item`` fields this dataset loads.

        RecBole's choice plus the id, type and text fields; when no item field is chosen and
        ``text_fields`` is ``~``, every item field (any may be text). :class:`~recbole_gfm.config.Config`
        calls this for models whose ``dataset_class`` is this class, so the printed and recorded
        config show what is loaded; the dataset calls it too, for configs made for other models.
        """
        text_fields = config["text_fields"]
        text_fields = [text_fields] if isinstance(text_fields, str) else text_fields
        needed = [f for f in (config["ITEM_ID_FIELD"], config["item_type_field"], *(text_fields or [])) if f]
        load_col, unload_col = config["load_col"], config["unload_col"]
        if load_col is not None and load_col.get("item") != "*":
            chosen = list(load_col.get("item") or [])
            item = "*" if not chosen and text_fields is None else chosen + [f for f in needed if f not in chosen]
            config["load_col"] = {**load_col, "item": item}
        if unload_col and unload_col.get("item"):
            config["unload_col"] = {**unload_col, "item": [f for f in unload_col["item"] if f not in needed]}

    def _paths(self, token: str, dataset_path: str) -> tuple[str, str]:
        return os.path.join(dataset_path, f"{token}.item"), os.path.join(dataset_path, f"{token}.inter")

    def _load_data(self, token, dataset_path):
        item_path, inter_path = self._paths(token, dataset_path)
        self._item_path = item_path
        if not os.path.isfile(item_path):
            raise DataError(
                f"{item_path} not found: {type(self).__name__} needs an .item file with each item's "
                f"'{self.type_field}' (item_type_field). Write one, or use a model that needs no item types."
            )
        _, header = read_header(self.config, item_path)
        if self.type_field not in header:
            raise DataError(
                f"{item_path} has no field '{self.type_field}' (item_type_field); its fields are "
                f"{', '.join(header)}. Add a '{self.type_field}:token' column, or set item_type_field "
                "to the field that holds the item type."
            )
        if header[self.type_field] != FeatureType.TOKEN.value:
            raise DataError(
                f"{item_path}: field '{self.type_field}' (item_type_field) is '{header[self.type_field]}'; "
                f"declare it as '{self.type_field}:token' (one type per item)."
            )
        missing = [f for f in self._text_fields or [] if f not in header]
        if missing:
            raise DataError(
                f"{item_path} has no field {', '.join(repr(f) for f in missing)} listed in text_fields; its "
                f"fields are {', '.join(header)}. Fix text_fields (or set it to ~ to use every text field)."
            )
        validate_atomic_files(self.config)
        super()._load_data(token, dataset_path)
        self._check_types(item_path, inter_path)
        self._raw_type_names = sorted(set(self.item_feat[self.type_field]))
        self._raw_texts, self._fallback_texts = self._build_raw_texts()

    def _check_types(self, item_path: str, inter_path: str) -> None:
        item, inter = self.item_feat, self.inter_feat
        types = item[self.type_field]
        empty = types.isna() | (types.astype(str).str.strip() == "")
        if empty.any():
            first = empty.idxmax()
            raise DataError(
                f"{item_path}: {int(empty.sum())} items have an empty '{self.type_field}' (item_type_field), "
                f"first on line {first + 2} (item '{item.at[first, self.iid_field]}'). Give every item a type."
            )
        known = inter[self.iid_field].isin(item[self.iid_field]) | inter[self.iid_field].isna()
        if not known.all():
            absent = pd.unique(inter.loc[~known, self.iid_field])
            raise DataError(
                f"{inter_path}: {int((~known).sum())} interactions with {len(absent)} items absent from "
                f"{item_path} (field '{self.iid_field}'; e.g. {', '.join(map(str, absent[:3]))}). Add those "
                f"items to the .item file with their '{self.type_field}', or remove their interactions."
            )
        present = set(types)
        declared = self.config["item_types"]
        if declared:
            lacking = [t for t in declared if t not in present]
            if lacking:
                raise DataError(
                    f"{item_path}: no item has '{self.type_field}' {', '.join(map(repr, lacking))}, declared "
                    f"in item_types; the file has {', '.join(sorted(present))}. Fix item_types or the data."
                )
            extra = sorted(present - set(declared))
            if extra:
                self.logger.warning(f"{item_path}: item types {extra} are not listed in item_types.")

    def _resolved_text_fields(self) -> list[str]:
        if self._text_fields is not None:
            return list(self._text_fields)
        textual = {FeatureType.TOKEN, FeatureType.TOKEN_SEQ}
        return [
            f
            for f in self.item_feat.columns
            if f not in (self.iid_field, self.type_field) and self.field2type.get(f) in textual
        ]

    def _build_raw_texts(self) -> tuple[dict[str, str], set[str]]:
        """Text per raw item token, and the tokens whose text fields were all empty."""
        item = self.item_feat
        text_fields = self._resolved_text_fields()
        other = [f for f in item.columns if f not in (self.iid_field, self.type_field, *text_fields)]
        texts, fallback = {}, set()
        for values in item.to_dict("records"):
            parts = []
            for i, field in enumerate(text_fields):
                value = _value_text(values[field])
                if value:
                    parts.append(value if i == 0 else f"{_label(field)}: {value}")
            token = values[self.iid_field]
            if not parts:
                fallback.add(token)
                parts = [_value_text(values[self.type_field]).replace("_", " ")]
                parts += [f"{_label(f)}: {v}" for f in other if (v := _value_text(values[f]))]
            texts[token] = ". ".join(parts)
        for field in text_fields:
            self._del_col(item, field)
        self._used_text_fields = text_fields
        return texts, fallback

    def _data_processing(self):
        super()._data_processing()
        item_tokens = self.field2id_token[self.iid_field]
        type_tokens = self.field2id_token[self.type_field]
        type_of_item = np.asarray(self.item_feat[self.type_field].values, dtype=np.int64)
        self._type_names = sorted({str(type_tokens[t]) for t in type_of_item[1:] if t > 0})
        lost = [t for t in self._raw_type_names if t not in self._type_names]
        if lost:
            self.logger.warning(f"No item of type {lost} is left after filtering; the dataset has {self._type_names}.")
        index = {name: i for i, name in enumerate(self._type_names)}
        by_token = np.array([index.get(str(t), -1) for t in type_tokens], dtype=np.int64)
        self._item_type_ids = torch.from_numpy(by_token[type_of_item])
        self._item_type_ids[0] = -1
        self._item_texts = [""] + [self._raw_texts.get(t, "") for t in item_tokens[1:]]
        fallback = sum(1 for t in item_tokens[1:] if t in self._fallback_texts)
        if fallback:
            self.logger.warning(
                f"{fallback} of {len(item_tokens) - 1} items have no text in {self._used_text_fields}: "
                "their text is built from their type and other fields."
            )
        del self._raw_texts, self._fallback_texts, self._raw_type_names

    def _column(self, field: str) -> np.ndarray:
        values = self.inter_feat[field]
        return values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values, dtype=np.int64)
