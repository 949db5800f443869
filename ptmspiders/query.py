"""MongoDB query filters, checked once and translated to SQL for the SQLite store.

``ptm query`` and :meth:`Store.query` take the same filter on both stores: MongoDB runs it
natively, SQLite runs the SQL built here over the JSON text of each document (``json_extract``,
``json_type``, ``json_each``). The translation follows MongoDB's rules where they matter for
these documents: a filter on an array field matches when the array or any element matches,
dotted paths descend into arrays of sub-documents, comparisons only match values of the same
type (numbers with numbers, strings with strings), ``{"f": null}`` matches null and missing.

Supported: equality, ``$eq $ne $gt $gte $lt $lte $in $nin $exists $regex``/``$options $all
$size $not``, and ``$and $or $nor``. Anything else is a :class:`QueryError`, never a silently
different answer.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

Filter = Mapping[str, Any]
Sort = list[tuple[str, int]]

FIELD_OPERATORS = frozenset({
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex",
    "$options", "$all", "$size", "$not",
})
LOGICAL_OPERATORS = frozenset({"$and", "$or", "$nor"})
_CMP_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_BAD_FIELD_CHARS = frozenset("'\"\\\x00$[]")
_NUMERIC = "('integer','real')"


class QueryError(ValueError):
    """A filter, sort or field list that the stores cannot run identically."""


# -- checking ------------------------------------------------------------------------------------

def check_filter(where: Any) -> dict[str, Any]:
    """The filter as a dict, or :class:`QueryError` naming what is wrong with it."""
    if where is None:
        return {}
    if not isinstance(where, Mapping):
        raise QueryError("a filter must be a JSON object, e.g. {\"hub\": \"huggingface\"}")
    for key, value in where.items():
        if key in LOGICAL_OPERATORS:
            if not isinstance(value, list) or not value:
                raise QueryError(f"{key} takes a non-empty list of filters")
            for sub in value:
                check_filter(sub)
        elif key.startswith("$"):
            raise QueryError(f"unsupported operator {key} (supported: "
                             f"{', '.join(sorted(LOGICAL_OPERATORS | FIELD_OPERATORS))})")
        else:
            check_field(key)
            _check_condition(key, value)
    return dict(where)


def check_field(field: str) -> None:
    if not isinstance(field, str) or not field or any(not p for p in field.split(".")):
        raise QueryError(f"invalid field name {field!r}")
    if set(field) & _BAD_FIELD_CHARS:
        raise QueryError(f"unsupported character in field name {field!r}")


def _is_operator_dict(value: Any) -> bool:
    if not isinstance(value, Mapping) or not value:
        return False
    dollar = [k.startswith("$") for k in value]
    if any(dollar) and not all(dollar):
        raise QueryError(f"cannot mix operators and field names in {dict(value)!r}")
    return all(dollar)


def _check_condition(field: str, value: Any) -> None:
    if not _is_operator_dict(value):
        _check_value(field, value)
        return
    for op, operand in value.items():
        if op not in FIELD_OPERATORS:
            raise QueryError(f"unsupported operator {op} on {field} (supported: "
                             f"{', '.join(sorted(FIELD_OPERATORS))})")
        if op in ("$eq", "$ne"):
            _check_value(field, operand)
        elif op in _CMP_SQL:
            if isinstance(operand, bool) or not isinstance(operand, int | float | str):
                raise QueryError(f"{op} on {field} needs a number or a string, got {operand!r}")
        elif op in ("$in", "$nin", "$all"):
            if not isinstance(operand, list):
                raise QueryError(f"{op} on {field} needs a list")
            for v in operand:
                _check_value(field, v)
        elif op == "$exists":
            if not isinstance(operand, bool | int):
                raise QueryError(f"$exists on {field} needs true or false")
        elif op == "$size":
            if isinstance(operand, bool) or not isinstance(operand, int) or operand < 0:
                raise QueryError(f"$size on {field} needs a whole number >= 0")
        elif op == "$regex":
            regex_flags(value.get("$options", ""))
            if not isinstance(operand, str):
                raise QueryError(f"$regex on {field} needs a string pattern")
            try:
                re.compile(operand)
            except re.error as exc:
                raise QueryError(f"$regex on {field}: {exc}") from None
        elif op == "$options":
            if "$regex" not in value:
                raise QueryError(f"$options on {field} needs $regex")
        elif op == "$not":
            if not _is_operator_dict(operand):
                raise QueryError(f"$not on {field} needs an operator object, e.g. "
                                 '{"$not": {"$gt": 5}}')
            _check_condition(field, operand)


def _check_value(field: str, value: Any) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str) or k.startswith("$"):
                raise QueryError(f"operator {k} inside a value of {field}")
            _check_value(field, v)
    elif isinstance(value, list):
        for v in value:
            _check_value(field, v)
    elif value is not None and not isinstance(value, bool | int | float | str):
        raise QueryError(f"unsupported value {value!r} for {field}")


def regex_flags(options: Any) -> int:
    if not isinstance(options, str):
        raise QueryError("$options must be a string such as \"i\"")
    flags = 0
    for ch in options:
        if ch not in _REGEX_FLAGS:
            raise QueryError(f"unsupported $options flag {ch!r} (supported: i, m, s, x)")
        flags |= _REGEX_FLAGS[ch]
    return flags


def parse_sort(spec: str | Sequence[str] | Sort | None) -> Sort:
    """``"-downloads,_id"`` (or a list of such keys, or (field, ±1) pairs) -> [(field, ±1)]."""
    if not spec:
        return []
    keys: list[Any] = spec.split(",") if isinstance(spec, str) else list(spec)
    out: Sort = []
    for key in keys:
        if isinstance(key, tuple):
            field, direction = key
        else:
            text = str(key).strip()
            direction = -1 if text.startswith("-") else 1
            field = text.lstrip("+-")
        if direction not in (1, -1):
            raise QueryError(f"sort direction of {field} must be 1 or -1")
        check_field(field)
        out.append((field, int(direction)))
    return out


def with_id_tiebreak(sort: Sort) -> Sort:
    """Ties are broken by ``_id`` on both stores so that equal keys come back in one order."""
    return sort if any(f == "_id" for f, _ in sort) else [*sort, ("_id", 1)]


def check_fields(fields: Sequence[str] | None) -> list[str] | None:
    if fields is None:
        return None
    for field in fields:
        check_field(field)
    return list(fields)


# -- SQL translation -----------------------------------------------------------------------------

def _step(part: str) -> str:
    return f"[{part}]" if part.isdigit() else f'."{part}"'


def json_path(field: str) -> str:
    """The SQLite JSON path of a dotted field, spelled as the stores' expression indexes are."""
    return "$" + "".join(_step(p) for p in field.split("."))


class _Translator:
    def __init__(self, column: str, id_column: str | None, scalar_fields: frozenset[str]) -> None:
        self.column = column
        self.id_column = id_column
        self.scalar_fields = scalar_fields
        self.params: list[Any] = []
        self.aliases = itertools.count(1)

    def param(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    # A location is a JSON value: its SQL value and its SQL json_type expressions.
    def filter(self, where: Filter) -> str:
        clauses = []
        for key, value in where.items():
            if key == "$and":
                clauses.append(_join("AND", [self.filter(s) for s in value]))
            elif key == "$or":
                clauses.append(_join("OR", [self.filter(s) for s in value]))
            elif key == "$nor":
                clauses.append(_join("AND", [_not(self.filter(s)) for s in value]))
            else:
                clauses.append(self.condition(key, value))
        return "(" + " AND ".join(clauses) + ")" if clauses else "1"

    def condition(self, field: str, value: Any) -> str:
        if not _is_operator_dict(value):
            return self.any_of(field, lambda v, t: self.eq(v, t, value))
        parts = []
        for op, operand in value.items():
            if op == "$options":
                continue
            parts.append(self.operator(field, op, operand, value))
        return "(" + " AND ".join(parts) + ")"

    def operator(self, field: str, op: str, operand: Any, ops: Mapping[str, Any]) -> str:
        if op == "$eq":
            return self.any_of(field, lambda v, t: self.eq(v, t, operand))
        if op == "$ne":
            return _not(self.any_of(field, lambda v, t: self.eq(v, t, operand)))
        if op in _CMP_SQL:
            return self.any_of(field, lambda v, t: self.cmp(v, t, _CMP_SQL[op], operand))
        if op == "$in":
            return self.any_of(field, lambda v, t: self.in_(v, t, operand))
        if op == "$nin":
            return _not(self.any_of(field, lambda v, t: self.in_(v, t, operand)))
        if op == "$all":
            if not operand:
                return "0"  # MongoDB: an empty $all matches nothing
            return "(" + " AND ".join(
                self.any_of(field, functools.partial(self._eq_to, x)) for x in operand) + ")"
        if op == "$exists":
            found = self.walk(field, lambda v, t: f"({t} IS NOT NULL)", elements=False)
            return found if operand else _not(found)
        if op == "$size":
            return self.walk(field, lambda v, t: (
                f"({t} IS 'array' AND json_array_length({v}) = {self.param(operand)})"),
                elements=False)
        if op == "$regex":
            flags = regex_flags(ops.get("$options", ""))
            return self.any_of(field, lambda v, t: (
                f"({t} IS 'text' AND ptm_regexp({self.param(operand)}, "
                f"{self.param(flags)}, {v}))"))
        if op == "$not":
            return _not(self.condition(field, operand))
        raise QueryError(f"unsupported operator {op}")

    # Predicates on one JSON value (v: its SQL value, t: its json_type).
    def _eq_to(self, x: Any, v: str, t: str) -> str:
        return self.eq(v, t, x)

    def eq(self, v: str, t: str, x: Any) -> str:
        if x is None:
            return f"(COALESCE({t}, 'null') = 'null')"
        if isinstance(x, bool):
            return f"({t} IS '{'true' if x else 'false'}')"
        if isinstance(x, int | float):
            return f"({v} = {self.param(x)} AND {t} IN {_NUMERIC})"
        if isinstance(x, str):
            return f"({v} = {self.param(x)} AND {t} IS 'text')"
        kind = "array" if isinstance(x, list) else "object"
        text = json.dumps(x, separators=(",", ":"), ensure_ascii=False)
        return f"({t} IS '{kind}' AND {v} = json({self.param(text)}))"

    def cmp(self, v: str, t: str, sql_op: str, x: Any) -> str:
        guard = f"{t} IN {_NUMERIC}" if isinstance(x, int | float) else f"{t} IS 'text'"
        return f"({v} {sql_op} {self.param(x)} AND {guard})"

    def in_(self, v: str, t: str, values: Sequence[Any]) -> str:
        """Strings and numbers as one SQL ``IN`` each (an index answers it with one probe per
        value); other values as equalities. A flat chain of hundreds of ``OR`` would exceed
        SQLite's expression depth (1,000)."""
        if not values:
            return "0"
        strs: list[str] = []
        nums: list[int | float] = []
        terms: list[str] = []
        for x in values:
            if isinstance(x, str):
                strs.append(x)
            elif isinstance(x, int | float) and not isinstance(x, bool):
                nums.append(x)
            else:
                terms.append(self.eq(v, t, x))
        if strs:
            marks = ", ".join(self.param(x) for x in strs)
            terms.append(f"({v} IN ({marks}) AND {t} IS 'text')")
        if nums:
            marks = ", ".join(self.param(x) for x in nums)
            terms.append(f"({v} IN ({marks}) AND {t} IN {_NUMERIC})")
        return _join("OR", terms)

    # Paths.
    def any_of(self, field: str, pred: Callable[[str, str], str]) -> str:
        """The value at ``field`` matches, or (MongoDB's array rule) one of its elements does."""
        return self.walk(field, pred, elements=True)

    def walk(self, field: str, pred: Callable[[str, str], str], *, elements: bool) -> str:
        parts = field.split(".")
        if field == "_id" and self.id_column:
            return pred(self.id_column, "'text'")
        if field in self.scalar_fields:  # never an array on the way: one plain path
            here = json_path(field)
            return pred(f"json_extract({self.column}, '{here}')",
                        f"json_type({self.column}, '{here}')")
        return self._walk(self.column, "$", parts, pred, elements=elements)

    def _walk(self, src: str, path: str, parts: list[str], pred: Callable[[str, str], str],
              *, elements: bool) -> str:
        head, rest = parts[0], parts[1:]
        here = path + _step(head)
        v, t = f"json_extract({src}, '{here}')", f"json_type({src}, '{here}')"
        if not rest:
            direct = pred(v, t)
            if not elements:
                return direct
            alias = f"j{next(self.aliases)}"
            inner = pred(f"{alias}.value", f"{alias}.type")
            return (f"({direct} OR ({t} IS 'array' AND EXISTS (SELECT 1 FROM "
                    f"json_each({src}, '{here}') AS {alias} WHERE {inner})))")
        if rest[0].isdigit():  # an array index (or a key that looks like one)
            return self._walk(src, here, rest, pred, elements=elements)
        direct = f"({t} IS NOT 'array' AND {self._walk(src, here, rest, pred, elements=elements)})"
        alias = f"j{next(self.aliases)}"
        inner = self._walk(f"{alias}.value", "$", rest, pred, elements=elements)
        return (f"({direct} OR ({t} IS 'array' AND EXISTS (SELECT 1 FROM "
                f"json_each({src}, '{here}') AS {alias} WHERE {alias}.type IS 'object' "
                f"AND {inner})))")


def _join(op: str, terms: Sequence[str]) -> str:
    """``AND``/``OR`` of the terms as a balanced tree: a flat chain of n terms is n deep, and
    SQLite refuses expressions deeper than 1,000."""
    if len(terms) == 1:
        return f"({terms[0]})"
    mid = len(terms) // 2
    return f"({_join(op, terms[:mid])} {op} {_join(op, terms[mid:])})"


def _not(sql: str) -> str:
    return f"(NOT COALESCE({sql}, 0))"


def to_sql(where: Filter | None, *, column: str = "doc", id_column: str | None = "_id",
           scalar_fields: frozenset[str] = frozenset()) -> tuple[str, list[Any]]:
    """``(sql, params)`` of a WHERE condition equivalent to the MongoDB filter.

    ``scalar_fields`` are top-level fields known never to hold arrays (from the JSON Schema):
    their tests skip the array branch, so SQLite can use the expression indexes on them.
    """
    checked = check_filter(where)
    if not checked:
        return "1", []
    tr = _Translator(column, id_column, scalar_fields)
    return tr.filter(checked), tr.params


def order_by(sort: Sort, column: str = "doc", id_column: str = "_id") -> str:
    keys = []
    for field, direction in with_id_tiebreak(sort):
        expr = id_column if field == "_id" else f"json_extract({column}, '{json_path(field)}')"
        keys.append(f"{expr} {'DESC' if direction < 0 else 'ASC'}")
    return ", ".join(keys)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def _regexp(pattern: str, flags: int, value: Any) -> int:
    if not isinstance(value, str):
        return 0
    return 1 if _compiled(pattern, flags).search(value) else 0


def register_functions(conn: sqlite3.Connection) -> None:
    """``ptm_regexp(pattern, flags, value)``: Python ``re`` search, as mongomock and (for the
    patterns people write) MongoDB's PCRE match."""
    conn.create_function("ptm_regexp", 3, _regexp, deterministic=True)


@functools.cache
def scalar_fields(collection: str) -> frozenset[str]:
    """Fields the collection's JSON Schema types as scalars reached through objects only:
    top-level ones (``hub``) and those inside object fields (``crawl.last_seen``)."""
    name = {"models": "model", "owners": "owner", "collections": "collection"}.get(collection)
    if name is None:
        return frozenset({"_id"})
    try:
        text = resources.files("ptmspiders").joinpath(f"schema/{name}.schema.json").read_text()
    except FileNotFoundError:
        return frozenset({"_id"})
    return frozenset({"_id", *_scalar_paths(json.loads(text), "")})


def _scalar_paths(spec: Mapping[str, Any], prefix: str) -> Iterator[str]:
    for field, sub in spec.get("properties", {}).items():
        types = sub.get("type")
        kinds = {types} if isinstance(types, str) else set(types or [])
        if "enum" in sub and not kinds:
            kinds = {"string"} if all(isinstance(v, str) for v in sub["enum"]) else {"?"}
        if kinds and kinds <= {"string", "integer", "number", "boolean", "null"}:
            yield prefix + field
        elif kinds and kinds <= {"object", "null"} and "properties" in sub:
            yield from _scalar_paths(sub, f"{prefix}{field}.")


def dotted(doc: Mapping[str, Any], field: str) -> Any:
    """The value at a dotted path through sub-documents (``None`` through arrays or absent)."""
    value: Any = doc
    for part in field.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def project(docs: Iterator[Mapping[str, Any]], fields: Sequence[str]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        yield {"_id": doc.get("_id"), **{f: dotted(doc, f) for f in fields if f != "_id"}}
