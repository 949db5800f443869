"""Spider argument parsing: a wrong ``-a`` value is a clear error at start, not an hour in."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ArgumentError(ValueError):
    """A spider argument with a value the spider cannot use."""


def int_arg(name: str, value: Any, *, minimum: int = 0) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ArgumentError(f"-a {name}={value!r}: expected a whole number") from None
    if number < minimum:
        raise ArgumentError(f"-a {name}={value!r}: must be >= {minimum}")
    return number


def bool_arg(name: str, value: Any, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ArgumentError(f"-a {name}={value!r}: expected 1/0, true/false, yes/no")


def list_arg(value: Any) -> list[str]:
    """Comma-separated (or already a list) -> stripped, non-empty strings."""
    if value is None or value == "":
        return []
    items: Iterable[Any] = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def choice_arg(name: str, value: Any, choices: Iterable[str]) -> str | None:
    if value is None or value == "":
        return None
    allowed = sorted(choices)
    if value not in allowed:
        raise ArgumentError(f"-a {name}={value!r}: expected one of {', '.join(allowed)}")
    return str(value)
