"""Check a dataset's atomic files before RecBole reads them; every error names file, line and field.

RecBole reads an atomic file's header with ``str.split(field_separator)`` and its rows with pandas'
python engine, i.e. the csv module: a value that starts with ``"`` is a quoted value, which may hold
separators and line breaks. Bad rows mostly do not fail there, or fail far from their cause: a row
with one field too many (a tab inside a title) shifts its columns, a missing field becomes NaN, an
item listed twice keeps its first row, a non-numeric timestamp ends in pandas' "Unable to convert
column". :func:`validate_atomic_files` reads the same files the same way first and raises a
:class:`DataError` naming the file, the line (1-based, as an editor shows it), the field and the fix.

Only loaded columns (``load_col`` / ``unload_col``) must parse; a row with the wrong number of
fields is always an error, as it shifts the columns after the fault. Rows are split by the csv
module (in C) in chunks and checked column-wise with pandas: ~200k lines take a fraction of a second.
"""

from __future__ import annotations

import csv
import itertools
import locale
import os
import re
from dataclasses import dataclass
from logging import getLogger
from typing import Iterator

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES
from recbole.utils import FeatureType

from recbole_gfm.config import ConfigError
from recbole_gfm.data.protocol import is_global_time_split

TYPES = tuple(t.value for t in FeatureType)  # token, float, token_seq, float_seq
NA_VALUES = frozenset(STR_NA_VALUES)  # what pandas (RecBole's reader) reads as a missing value
CHUNK_ROWS = 1 << 18
_BOOLEANS = frozenset({"True", "TRUE", "true", "False", "FALSE", "false"})  # pandas reads them as 1 / 0
_TEXT_HINT = "tabs and line breaks inside text values (e.g. a title) must be escaped or removed"
_validated: set[str] = set()


class DataError(ConfigError):
    """Input data the user must fix; the message names the file, the field and what to do."""


@dataclass(frozen=True)
class _Spec:
    """One atomic file RecBole will read, and what must hold in it."""

    path: str
    source: str  # inter, user, item or an additional_feat_suffix
    ids: tuple[tuple[str, str], ...]  # (field, config key) of the id fields every row needs
    unique: tuple[str, str] | None  # (field, config key) that must not repeat (.item / .user ids)
    row: str  # what a row is, for messages: interaction, item, user, row


@dataclass
class _Issue:
    """The first line of one kind of bad row, how many rows have it, and what to say after the line."""

    line: int
    count: int
    message: str


class _Columns:
    """RecBole's choice of loaded fields for one source (``Dataset._get_load_and_unload_col``)."""

    def __init__(self, config, source: str):
        load_col, unload_col = config["load_col"], config["unload_col"]
        if load_col is None or load_col.get(source) == "*":
            self.load = None
        else:
            self.load = set(load_col.get(source) or [])
        self.unload = set(unload_col[source]) if unload_col and source in unload_col else set()
        self.listed = [] if self.load is None else list(load_col.get(source) or [])

    def any(self) -> bool:
        """False when RecBole skips the file (its source is absent from a load_col dict)."""
        return self.load is None or bool(self.load)

    def __contains__(self, field: str) -> bool:
        return (self.load is None or field in self.load) and field not in self.unload


def validate_atomic_files(config) -> None:
    """Check every atomic file ``config`` makes RecBole read; raise :class:`DataError` on the first problem.

    The files: ``<dataset>.inter`` (or ``<dataset>.<part>.inter`` for each ``benchmark_filename``
    part), ``.user`` and ``.item`` when present and loaded, and ``additional_feat_suffix`` files,
    all in ``config['data_path']``, read with ``field_separator``, ``encoding`` and
    ``seq_separator``. Call it right before the dataset is created; a second call with the same
    files (size and modification time) and settings returns at once.
    """
    specs = _file_specs(config)
    key = repr(
        (
            [(s.path, *_stamp(s.path)) for s in specs],
            *(config[k] for k in ("field_separator", "encoding", "seq_separator", "load_col", "unload_col")),
            *(config[k] for k in ("USER_ID_FIELD", "ITEM_ID_FIELD", "TIME_FIELD")),
            is_global_time_split(config),
        )
    )
    if key in _validated:
        return
    for spec in specs:
        _check_file(config, spec)
    _validated.add(key)


def _stamp(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _file_specs(config) -> list[_Spec]:
    folder, name = config["data_path"], config["dataset"]
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    inter_ids = tuple((f, k) for f, k in ((uid, "USER_ID_FIELD"), (iid, "ITEM_ID_FIELD")) if f)
    parts = config["benchmark_filename"]
    specs = []
    for part in parts or [None]:
        path = os.path.join(folder, f"{name}.inter" if part is None else f"{name}.{part}.inter")
        if not os.path.isfile(path):
            why = f"benchmark_filename lists '{part}'" if part else f"dataset '{name}' needs its interactions in it"
            raise DataError(
                f"{path} not found: {why}. Put the file there, or set data_path to the folder holding '{name}/'."
            )
        specs.append(_Spec(path, "inter", inter_ids, None, "interaction"))
    for source, field, key in (("user", uid, "USER_ID_FIELD"), ("item", iid, "ITEM_ID_FIELD")):
        path = os.path.join(folder, f"{name}.{source}")
        if os.path.isfile(path) and _Columns(config, source).any():
            ids = ((field, key),) if field else ()
            specs.append(_Spec(path, source, ids, ids[0] if ids else None, source))
    for suffix in config["additional_feat_suffix"] or []:
        path = os.path.join(folder, f"{name}.{suffix}")
        if not os.path.isfile(path):
            raise DataError(
                f"{path} not found: additional_feat_suffix lists '{suffix}'. Add the file or drop '{suffix}'."
            )
        specs.append(_Spec(path, suffix, (), None, "row"))
    return specs


def _encoding(config) -> str:
    return config["encoding"] or locale.getpreferredencoding(False)


def _separator_name(sep: str) -> str:
    return {"\t": "a tab", ",": "a comma", ";": "a semicolon", " ": "a space"}.get(sep, repr(sep))


def read_header(config, path: str) -> tuple[list[str], dict[str, str]]:
    """The header's raw columns and ``{field: type}`` of an atomic file, checked the way RecBole parses them."""
    sep, encoding = config["field_separator"], _encoding(config)
    try:
        with open(path, encoding=encoding, newline="") as f:
            line = f.readline()
    except UnicodeDecodeError as e:
        raise _decode_error(path, encoding, e) from None
    if not line.strip():
        raise DataError(
            f"{path} is empty: an atomic file starts with a header line of name:type fields separated by "
            f"field_separator ({_separator_name(sep)}), e.g. 'user_id:token{sep}item_id:token', then one line per row."
        )
    if line.startswith("\ufeff"):
        raise DataError(
            f"{path}, line 1: the file starts with a byte-order mark (BOM), which becomes part of the first field "
            f"name. Save it without BOM, or set encoding: utf-8-sig."
        )
    columns = line.rstrip("\r\n").split(sep)
    if len(columns) == 1 and columns[0].count(":") > 1:
        raise DataError(
            f"{path}, line 1: the header is one field, '{columns[0]}': no field_separator "
            f"({_separator_name(sep)}) in it. Set field_separator to the file's separator."
        )
    fields: dict[str, str] = {}
    for i, column in enumerate(columns, start=1):
        parts = column.split(":")
        if len(parts) != 2 or not parts[0]:
            hint = f"'{column}:token'" if len(parts) == 1 and column else "name:type"
            empty = " (an empty field often comes from a field_separator at the end of the line)" if not column else ""
            raise DataError(
                f"{path}, line 1: header field {i} '{column}' is not name:type{empty}; write it as {hint} "
                f"(types: {', '.join(TYPES)})."
            )
        field, ftype = parts
        if ftype not in TYPES:
            raise DataError(
                f"{path}, line 1: field '{field}' has type '{ftype}', which RecBole does not know; "
                f"use one of {', '.join(TYPES)} (e.g. '{field}:float' for numbers)."
            )
        if field in fields:
            raise DataError(f"{path}, line 1: field '{field}' appears twice in the header; rename or remove one.")
        fields[field] = ftype
    return columns, fields


def _check_header_fields(config, spec: _Spec, fields: dict[str, str], columns: _Columns) -> None:
    path, known = spec.path, ", ".join(fields)
    for field, key in spec.ids:
        if field not in fields:
            raise DataError(
                f"{path} has no field '{field}' ({key}); its fields are {known}. "
                f"Rename the column to '{field}', or set {key} to the field that holds it."
            )
        if field not in columns:
            raise DataError(
                f"{path}: field '{field}' ({key}) is not loaded; add it to load_col['{spec.source}'] "
                f"(or remove it from unload_col['{spec.source}'])."
            )
    time_field = config["TIME_FIELD"]
    if spec.source == "inter" and time_field and is_global_time_split(config) and time_field not in fields:
        raise DataError(
            f"{path} has no field '{time_field}' (TIME_FIELD), which the global temporal split (eval_args "
            f"order TO, group_by none) orders interactions by; its fields are {known}. Add a "
            f"'{time_field}:float' column, set TIME_FIELD, or use another protocol (e.g. --protocol=rs811)."
        )
    absent = [f for f in columns.listed if f not in fields]
    if absent:
        getLogger().warning(
            f"load_col['{spec.source}'] names {', '.join(map(repr, absent))}, but {path} has no such field "
            f"(its fields are {known}): not loaded."
        )


def _check_file(config, spec: _Spec) -> None:
    header, fields = read_header(config, spec.path)
    columns = _Columns(config, spec.source)
    _check_header_fields(config, spec, fields, columns)
    names = list(fields)
    width = len(names)
    checks = {
        "id": [(names.index(f), f, k) for f, k in spec.ids],
        "float": [(i, f) for i, f in enumerate(names) if fields[f] == "float" and f in columns],
        "float_seq": [(i, f) for i, f in enumerate(names) if fields[f] == "float_seq" and f in columns],
    }
    issues: dict[tuple, _Issue] = {}
    unique_values, unique_lines = [], []
    n_rows = 0
    for rows, lines in _chunks(config, spec.path):
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        blank = lengths == 0
        single = np.flatnonzero(lengths == 1)
        if single.size:  # pandas skips a line holding one blank value too
            blank[single] = [not rows[i][0].strip() for i in single]
        for more in (True, False):
            wrong = np.flatnonzero((lengths > width if more else lengths < width) & ~blank)
            if wrong.size:
                cause = (
                    f"a field_separator ({_separator_name(config['field_separator'])}) inside a text value splits it"
                    if more
                    else "a field is missing, or a line break inside a text value ended the row early"
                )
                _note(
                    issues, ("width", more), int(lines[wrong[0]]),
                    f": {lengths[wrong[0]]} fields where the header has {width} ({', '.join(names)}); {cause}: "
                    f"{_TEXT_HINT}.", wrong.size,
                )
        good = np.flatnonzero((lengths == width) & ~blank)
        n_rows += len(good)
        rows = [rows[i] for i in good]
        lines = lines[good]
        for i in (i for i, row in enumerate(rows) if row == header):
            _note(issues, ("header",), int(lines[i]), " repeats the header line (files joined?): delete it.")
        for index, field, key in checks["id"]:
            values = pd.Series([row[index] for row in rows], dtype=object)
            missing = [v for v in pd.unique(values) if v in NA_VALUES or not v.strip()]  # ids repeat: check each once
            bad = values.isin(missing).to_numpy()
            if bad.any():
                i = np.flatnonzero(bad)[0]
                value = values.iat[i]
                what = f"'{value}', which pandas (RecBole's reader) reads as missing" if value.strip() else "empty"
                _note(
                    issues, ("id", field), int(lines[i]),
                    f": field '{field}' ({key}) is {what}. Give every row an id "
                    "(and rename ids such as NA, null, None or nan).", int(bad.sum()),
                )
            if spec.unique and field == spec.unique[0]:
                unique_values.append(values.to_numpy())
                unique_lines.append(lines)
        for index, field in checks["float"]:
            values = pd.Series([row[index] for row in rows], dtype=object)
            _check_numbers(issues, field, "float", values, lines)
            if spec.source == "inter" and field == config["TIME_FIELD"]:
                _check_times(issues, field, values, lines)
        for index, field in checks["float_seq"]:
            values = pd.Series([row[index] for row in rows], dtype=object)
            pieces = values[~values.isin(NA_VALUES)].str.split(config["seq_separator"]).explode()
            pieces = pieces[pieces != ""]
            _check_numbers(issues, field, "float_seq", pieces, lines[pieces.index.to_numpy()])
    if issues:
        first = min(issues.values(), key=lambda issue: issue.line)
        more = f" ({first.count} lines like it.)" if first.count > 1 else ""
        raise DataError(f"{spec.path}, line {first.line}{first.message}{more}")
    if n_rows == 0:
        raise DataError(f"{spec.path} has no {spec.row}s: only the header line. Add one line per {spec.row} below it.")
    if unique_values:
        _check_unique(spec, np.concatenate(unique_values), np.concatenate(unique_lines))


def _note(issues: dict, kind: tuple, line: int, message: str, count: int = 1) -> None:
    issue = issues.get(kind)
    if issue is None:
        issues[kind] = _Issue(line, count, message)
    else:
        issue.count += count


def _check_numbers(issues: dict, field: str, ftype: str, values: pd.Series, lines: np.ndarray) -> None:
    """Values RecBole cannot read as numbers: pandas for float fields, ``float()`` for float_seq items."""
    if values.empty:
        return
    suspect = pd.to_numeric(values, errors="coerce").isna().to_numpy()
    if ftype == "float":
        suspect &= ~values.isin(NA_VALUES).to_numpy()
    suspect[suspect] = [not _is_number(v, ftype) for v in values.to_numpy()[suspect]]
    bad = np.flatnonzero(suspect)
    if bad.size:
        example = "a Unix timestamp in seconds" if "time" in field else "1.5"
        _note(
            issues, ("number", field), int(lines[bad[0]]),
            f", field '{field}' ({ftype}): '{values.iat[bad[0]]}' is not a number. Write a "
            f"number (e.g. {example}), leave it empty, or drop '{field}' from load_col.", len(np.unique(lines[bad])),
        )


def _check_times(issues: dict, field: str, values: pd.Series, lines: np.ndarray) -> None:
    """Negative timestamps: a missing time written as -1, or a clock off by an epoch; every split orders by them."""
    negative = np.flatnonzero((pd.to_numeric(values, errors="coerce") < 0).to_numpy())
    if negative.size:
        _note(
            issues, ("negative time", field), int(lines[negative[0]]),
            f", field '{field}' (TIME_FIELD): '{values.iat[negative[0]]}' is a negative timestamp. Write the time of the "
            "interaction (e.g. Unix seconds, >= 0), leave it empty if it is unknown, or drop the row.", negative.size,
        )


def _is_number(value: str, ftype: str) -> bool:
    if ftype == "float" and value in _BOOLEANS:
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


def _check_unique(spec: _Spec, values: np.ndarray, lines: np.ndarray) -> None:
    duplicated = pd.Series(values).duplicated(keep=False).to_numpy()
    if not duplicated.any():
        return
    field, key = spec.unique
    first = values[np.flatnonzero(duplicated)[0]]
    where = lines[values == first]
    n_ids = len(set(values[duplicated]))
    others = f" ({n_ids} ids are listed more than once.)" if n_ids > 1 else ""
    raise DataError(
        f"{spec.path}, lines {', '.join(map(str, where[:5]))}: {spec.source} id '{first}' (field '{field}', {key}) "
        f"is listed {len(where)} times; RecBole would keep only the first row. Merge the rows into one.{others}"
    )


def _dialect(sep: str) -> type[csv.Dialect]:
    """The csv dialect of pandas' python engine (``pandas.io.parsers.python_parser``), strict like it."""

    class Dialect(csv.Dialect):
        delimiter = sep
        quotechar = '"'
        escapechar = None
        doublequote = True
        skipinitialspace = False
        quoting = csv.QUOTE_MINIMAL
        lineterminator = "\n"
        strict = True

    return Dialect


def _chunks(config, path: str) -> Iterator[tuple[list[list[str]], np.ndarray]]:
    """The data rows as RecBole's reader splits them, in chunks, with their line numbers."""
    sep, encoding = config["field_separator"], _encoding(config)
    with open(path, encoding=encoding, newline="") as f:
        f.readline()
        if len(sep) == 1:
            reader = csv.reader(f, _dialect(sep))
        else:  # pandas reads a longer separator as a regular expression, without quoting
            pattern = re.compile(sep)
            reader = (pattern.split(line.strip()) if line.strip() else [] for line in f)
        done = 1  # lines read so far (the header)
        while True:
            try:
                rows = list(itertools.islice(reader, CHUNK_ROWS))
            except UnicodeDecodeError as e:
                raise _decode_error(path, encoding, e) from None
            except csv.Error:
                raise _record_error(config, path) from None
            if not rows:
                return
            end = done + len(rows) if len(sep) > 1 else reader.line_num + 1
            if end != done + len(rows):  # a quoted value spans lines
                raise _record_error(config, path)
            yield rows, np.arange(done + 1, end + 1)
            done = end


def _record_error(config, path: str) -> DataError:
    """The first row whose quoting RecBole's reader would take across lines, or reject."""
    sep, encoding = config["field_separator"], _encoding(config)
    quote_hint = (
        "RecBole's reader takes a value that starts with a double quote (\") as quoted, up to the next quote. "
        f"Remove such quotes (or quote the whole value and double the quotes inside); {_TEXT_HINT}."
    )
    with open(path, encoding=encoding, newline="") as f:
        header = f.readline().rstrip("\r\n").split(sep)
        reader = csv.reader(f, _dialect(sep))
        end = 1
        try:
            for row in reader:
                start, end = end + 1, reader.line_num + 1
                if end > start:
                    spans = [i for i, value in enumerate(row) if "\n" in value or "\r" in value]
                    field = header[spans[0]].split(":")[0] if spans and spans[0] < len(header) else "?"
                    return DataError(
                        f"{path}, line {start}: a quoted value in field '{field}' runs on to line {end}, so "
                        f"lines {start}-{end} would be read as one row. {quote_hint}"
                    )
        except csv.Error as e:
            if "unexpected end of data" in str(e):
                return DataError(
                    f"{path}, line {end + 1}: a quoted value opened on this line is never closed, so the rest of "
                    f"the file would be read into it. {quote_hint}"
                )
            return DataError(f"{path}, line {end + 1}: malformed quoting ({e}). {quote_hint}")
    return DataError(f"{path}: malformed quoting. {quote_hint}")


def _decode_error(path: str, encoding: str, error: UnicodeDecodeError) -> DataError:
    """Name the line holding the first byte the configured encoding cannot decode."""
    hint = f"Save the file as {encoding}, or set encoding to the file's encoding (e.g. latin-1)."
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as e:
                return DataError(
                    f"{path}, line {number}: byte {raw[e.start]:#04x} is not valid {encoding} ({e.reason}). {hint}"
                )
    return DataError(f"{path}: not valid {encoding} ({error.reason}). {hint}")
