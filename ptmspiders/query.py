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

Hostile filters are refused before they reach a store: nesting deeper than :data:`MAX_DEPTH`
(in the JSON text, the filter and a dotted path alike), integers beyond 64 bits, NaN. The SQL
grows linearly with the filter: a dotted path is walked by one registered function
(``ptm_path``), not spelled out per part. Regular expressions run on RE2 (linear time: no
pattern can take exponential time on SQLite; MongoDB gets a ``maxTimeMS`` from ``ptm``).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any

import orjson
import re2

Filter = Mapping[str, Any]
Sort = list[tuple[str, int]]

FIELD_OPERATORS = frozenset({
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex",
    "$options", "$all", "$size", "$not",
})
LOGICAL_OPERATORS = frozenset({"$and", "$or", "$nor"})
_CMP_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_REGEX_OPTIONS = frozenset("imsx")  # MongoDB's $options that RE2 can honour (x: see _verbose)
_BAD_FIELD_CHARS = frozenset("'\"\\\x00$[]")
_NUMERIC = "('integer','real')"
# Nesting of a filter: JSON objects and arrays in its text or structure, and parts of a dotted
# path. Real filters use a handful; the bound keeps json.loads, the checks below and SQLite's
# parser (which gives up on SQL nested ~100 deep) far from their own limits.
MAX_DEPTH = 32
# Integers the stores can hold and compare: SQLite and BSON integers are 64-bit.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class QueryError(ValueError):
    """A filter, sort or field list that the stores cannot run identically."""


# -- checking ------------------------------------------------------------------------------------

def check_filter(where: Any) -> dict[str, Any]:
    """The filter as a dict, or :class:`QueryError` naming what is wrong with it."""
    if where is None:
        return {}
    if not isinstance(where, Mapping):
        raise QueryError("a filter must be a JSON object, e.g. {\"hub\": \"huggingface\"}")
    check_depth(where)
    _check_filter(where)
    return dict(where)


def check_depth(value: Any) -> None:
    """:class:`QueryError` when objects and arrays nest deeper than :data:`MAX_DEPTH`; walked
    with a stack, so that a hostile structure cannot exhaust Python's recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (item.values() if isinstance(item, Mapping)
                    else item if isinstance(item, list | tuple) else None)
        if children is None:
            continue
        if depth > MAX_DEPTH:
            raise _too_deep()
        stack.extend((child, depth + 1) for child in children)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def check_json_depth(text: str) -> None:
    """:class:`QueryError` when the JSON text nests deeper than :data:`MAX_DEPTH`, found by
    counting brackets outside strings before ``json.loads`` recurses into it."""
    depth = 0
    for ch in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        if depth > MAX_DEPTH:
            raise _too_deep()


def _too_deep() -> QueryError:
    return QueryError(f"filter nested more than {MAX_DEPTH} levels deep (objects, arrays and "
                      "dotted path parts count): write it flatter")


def _check_filter(where: Any) -> None:
    if not isinstance(where, Mapping):
        raise QueryError("a filter must be a JSON object, e.g. {\"hub\": \"huggingface\"}")
    for key, value in where.items():
        if key in LOGICAL_OPERATORS:
            if not isinstance(value, list) or not value:
                raise QueryError(f"{key} takes a non-empty list of filters")
            for sub in value:
                _check_filter(sub)
        elif key.startswith("$"):
            raise QueryError(f"unsupported operator {key} (supported: "
                             f"{', '.join(sorted(LOGICAL_OPERATORS | FIELD_OPERATORS))})")
        else:
            check_field(key)
            _check_condition(key, value)


def check_field(field: str) -> None:
    if not isinstance(field, str) or not field or any(not p for p in field.split(".")):
        raise QueryError(f"invalid field name {field!r}")
    if set(field) & _BAD_FIELD_CHARS:
        raise QueryError(f"unsupported character in field name {field!r}")
    if field.count(".") >= MAX_DEPTH:
        raise QueryError(f"field name {field[:40]!r}... has more than {MAX_DEPTH} parts")


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
            _check_number(field, operand)
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
            _check_number(field, operand)
        elif op == "$regex":
            if not isinstance(operand, str):
                raise QueryError(f"$regex on {field} needs a string pattern")
            try:
                compile_regex(operand, regex_options(value.get("$options", "")))
            except re2.error as exc:
                raise QueryError(f"$regex on {field}: {_re2_message(exc)} (patterns are RE2: "
                                 "no backreferences or lookaround)") from None
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
    else:
        _check_number(field, value)


def _check_number(field: str, value: Any) -> None:
    """Numbers both stores can bind: 64-bit integers and finite floats."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        shown = str(value) if len(str(value)) <= 30 else str(value)[:27] + "..."
        raise QueryError(f"integer {shown} for {field} is outside the 64-bit range the "
                         "stores hold")
    if isinstance(value, float) and not math.isfinite(value):
        raise QueryError(f"{value} for {field}: NaN and infinite numbers are not supported")


def regex_options(options: Any) -> str:
    """MongoDB's ``$options`` checked: the letters i, m, s, x in a string."""
    if not isinstance(options, str):
        raise QueryError("$options must be a string such as \"i\"")
    for ch in options:
        if ch not in _REGEX_OPTIONS:
            raise QueryError(f"unsupported $options flag {ch!r} (supported: i, m, s, x)")
    return options


def _re2_message(exc: Exception) -> str:
    text = exc.args[0] if exc.args else exc
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is our one-line QueryError, not a log on stderr


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str, options: str = "") -> Any:
    """``pattern`` with MongoDB's ``$options`` as an RE2 regex. RE2 matches in time linear in
    the text, so no pattern (``(.|.)*X``) can run away as a backtracking engine does."""
    options = regex_options(options)
    if "x" in options:
        pattern = _verbose(pattern)
    flags = "".join(ch for ch in options if ch in "ims")
    return re2.compile(f"(?{flags}){pattern}" if flags else pattern, options=_RE2_OPTIONS)


_VERBOSE_TOKEN = re.compile(
    r"\\.|\[(?:\\.|[^\]\\])*\]?|#[^\n]*|\s+|[^\\\[#\s]+|\\", re.DOTALL)


def _verbose(pattern: str) -> str:
    """MongoDB's ``x`` option, which RE2 lacks: whitespace and ``#`` comments dropped, except
    when escaped or inside a character class."""
    return "".join(tok for tok in _VERBOSE_TOKEN.findall(pattern)
                   if not tok.isspace() and not tok.startswith("#"))


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

def _is_index(part: str) -> bool:
    """An array index in a dotted path: ASCII digits only (``"²".isdigit()`` is true too)."""
    return part.isascii() and part.isdigit()


def _step(part: str) -> str:
    return f"[{part}]" if _is_index(part) else f'."{part}"'


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
                clauses.append(_not(_join("OR", [self.filter(s) for s in value])))
            else:
                clauses.append(self.condition(key, value))
        return _join("AND", clauses) if clauses else "1"

    def condition(self, field: str, value: Any) -> str:
        if not _is_operator_dict(value):
            return self.any_of(field, lambda v, t: self.eq(v, t, value))
        parts = []
        for op, operand in value.items():
            if op == "$options":
                continue
            parts.append(self.operator(field, op, operand, value))
        return _join("AND", parts)

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
            return _join("AND", [self.any_of(field, functools.partial(self._eq_to, x))
                                 for x in operand])
        if op == "$exists":
            found = self.walk(field, lambda v, t: f"({t} IS NOT NULL)", elements=False)
            return found if operand else _not(found)
        if op == "$size":
            return self.walk(field, lambda v, t: (
                f"({t} IS 'array' AND json_array_length({v}) = {self.param(operand)})"),
                elements=False)
        if op == "$regex":
            options = regex_options(ops.get("$options", ""))
            return self.any_of(field, lambda v, t: (
                f"({t} IS 'text' AND ptm_regexp({self.param(operand)}, "
                f"{self.param(options)}, {v}))"))
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
        """``pred`` on the value(s) at ``field``; the SQL has ``pred`` at most twice whatever
        the path's length (a path of n parts once grew 4x per part, and overflowed SQLite's
        parser at six)."""
        if field == "_id" and self.id_column:
            return pred(self.id_column, "'text'")
        if field in self.scalar_fields:  # never an array on the way: one plain path
            here = json_path(field)
            return pred(f"json_extract({self.column}, '{here}')",
                        f"json_type({self.column}, '{here}')")
        alias = f"j{next(self.aliases)}"
        # Parameters are bound in the order the SQL text has them: build left to right.
        if "." not in field:  # a top-level field: SQLite's own JSON functions, no Python call
            here = json_path(field)
            v, t = f"json_extract({self.column}, '{here}')", f"json_type({self.column}, '{here}')"
            direct = pred(v, t)
            if not elements:
                return direct
            inner = pred(f"{alias}.value", f"{alias}.type")
            return (f"({direct} OR ({t} IS 'array' AND EXISTS (SELECT 1 FROM "
                    f"json_each({self.column}, '{here}') AS {alias} WHERE {inner})))")
        # Through sub-documents and arrays: ptm_path lists the values MongoDB would test,
        # from the JSON text of the first part's value (json_quote keeps JSON as it is).
        first = f"json_quote(json_extract({self.column}, '{json_path(field.split('.')[0])}'))"
        source = f"ptm_path({first}, {self.param(field)}, {int(elements)})"
        inner = pred(f"{alias}.value", f"{alias}.type")
        return f"EXISTS (SELECT 1 FROM json_each({source}) AS {alias} WHERE {inner})"


# Every SQL term built here is self-contained (a parenthesised expression, EXISTS (...), 0 or
# 1), so terms combine without more parentheses: each level of them costs SQLite's parser stack
# (~100 deep), and the deepest filter :data:`MAX_DEPTH` allows must still parse.
def _join(op: str, terms: Sequence[str]) -> str:
    """``AND``/``OR`` of the terms as a tree of flat chains of up to :data:`_FAN_OUT` terms:
    one flat chain of n terms is an expression n deep (SQLite refuses 1,000), a binary tree
    nests parentheses log2(n) deep at every level of the filter (its parser stack gives up
    at ~100)."""
    if len(terms) == 1:
        return terms[0]
    if len(terms) > _FAN_OUT:
        size = -(-len(terms) // _FAN_OUT)
        terms = [_join(op, terms[i:i + size]) for i in range(0, len(terms), size)]
    return "(" + f" {op} ".join(terms) + ")"


_FAN_OUT = 16


def _not(sql: str) -> str:
    """Negation where NULL (a missing value) counts as false, as MongoDB's: the conditions are
    0, 1 or NULL, so ``IS NOT 1`` is ``NOT COALESCE(x, 0)`` with one level fewer."""
    return f"({sql} IS NOT 1)"


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


_MISSING = object()


def path_values(value: Any, parts: Sequence[str], elements: bool) -> list[Any]:
    """The values MongoDB tests for the dotted path ``parts``, given ``value``, the value of
    its first part (``doc.get(parts[0])``): an array on the way stands for each of its
    sub-documents, a number indexes an array. With ``elements`` (equality, comparisons,
    ``$in``, ``$regex``), a final array also gives its elements and a missing value gives
    ``None`` (``{"f": null}`` matches missing); without (``$exists``, ``$size``), only values
    that are there. Iterative; paths have at most :data:`MAX_DEPTH` parts."""
    out: list[Any] = []
    last = len(parts) - 1
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        value, i = stack.pop()
        if i == last:
            if value is not _MISSING:
                out.append(value)
                if elements and isinstance(value, list):
                    out.extend(value)
            elif elements:
                out.append(None)
            continue
        part = parts[i + 1]
        if isinstance(value, list) and not _is_index(part):
            stack.extend((el.get(part, _MISSING), i + 1)
                         for el in reversed(value) if isinstance(el, Mapping))
        elif isinstance(value, list):
            n = int(part)
            stack.append((value[n] if n < len(value) else _MISSING, i + 1))
        elif isinstance(value, Mapping):
            stack.append((value.get(part, _MISSING), i + 1))
        elif elements:
            out.append(None)  # a scalar or nothing on the way: the field is missing
    return out


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> Any:
    """A value parsed once for the several conditions a filter has on it."""
    return orjson.loads(text)


def _ptm_path(first: str | None, field: str, elements: int) -> bytes:
    """SQL ``ptm_path(first, field, elements)``: ``first`` is the JSON text of the value of
    the field's first part, which SQLite extracts (parsing in C); the JSON array of
    :func:`path_values`. ``null`` there means missing: it has parts below it."""
    value = _MISSING if first is None else _parsed(first)
    return orjson.dumps(path_values(_MISSING if value is None else value, field.split("."),
                                    bool(elements)))


def _regexp(pattern: str, options: str, value: Any) -> int:
    if not isinstance(value, str):
        return 0
    return 1 if compile_regex(pattern, options).search(value) else 0


def register_functions(conn: sqlite3.Connection) -> None:
    """``ptm_regexp(pattern, options, value)``: an RE2 search; ``ptm_path(first, field,
    elements)``: the values a dotted path reaches (see :func:`_ptm_path`)."""
    conn.create_function("ptm_regexp", 3, _regexp, deterministic=True)
    conn.create_function("ptm_path", 3, _ptm_path, deterministic=True)


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
