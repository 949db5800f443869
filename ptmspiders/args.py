"""Spider arguments (``-a name=value``) as pydantic models, the way scrapy-spider-metadata
declares them: each spider is ``PtmSpider[TheParams]`` and reads ``self.args``.

A parameter model holds, for each argument, its type, default and help text, and the rules
across arguments. A wrong value or an unknown name is an :class:`ArgumentError` whose message
is one line (:func:`one_line`); ``scrapy crawl`` reports it before the crawl starts. A field
declared with ``json_schema_extra=RESTRICTS`` lists only part of the hub when given: the model's
:meth:`SpiderParams.restricted_by` says so, and history infers no removals from such a crawl.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from ptmspiders.query import INT64_MAX


class ArgumentError(ValueError):
    """A spider argument (or setting) with a value the spider cannot use."""


# ``json_schema_extra`` of a field that, when given, makes the crawl see part of the hub only.
RESTRICTS: dict[str, Any] = {"restrictsCrawl": True}


def _blank_is_none(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _blank_is_false(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip() or False
    return value


def list_arg(value: Any) -> list[str]:
    """Comma-separated (or already a list) -> stripped, non-empty strings."""
    if value is None or value == "":
        return []
    items: Iterable[Any] = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def blank_is(default: Any) -> BeforeValidator:
    """A blank value (``-a name=``) means ``default``."""
    return BeforeValidator(lambda value: default if _blank_is_none(value) is None else value)


def one_of(choices: Collection[str]) -> Callable[[str | None], str | None]:
    """An after-validator: ``None`` or one of ``choices``."""
    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise ValueError(f"expected one of {', '.join(sorted(choices))}")
        return value
    return check


# The types arguments are made of; a blank value is as if the argument were not given.
Text = Annotated[str | None, BeforeValidator(_blank_is_none)]
# At most what a store's integer holds: a larger limit was accepted, then failed the write of
# the crawl record (which keeps the arguments) with a traceback.
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
Limit = Annotated[Annotated[Count, Field(gt=0)] | None, BeforeValidator(_blank_is_none)]
Names = Annotated[list[str], BeforeValidator(list_arg)]  # comma-separated
# Off unless given; 1/0, true/false, yes/no, on/off (pydantic's spellings of a boolean).
Flag = Annotated[bool, BeforeValidator(_blank_is_false)]


class SpiderParams(BaseModel):
    """What every spider takes. Subclasses add their own fields (and rules, as validators)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # False for a spider that never lists a whole hub, whatever its arguments (packages).
    lists_whole_hub: ClassVar[bool] = True

    full: Flag = Field(False, description="refetch everything an incremental crawl would skip")

    @model_validator(mode="before")
    @classmethod
    def _drop_scheduler_arguments(cls, data: Any) -> Any:
        """Names that begin with ``_`` are the scheduler's (scrapyd adds ``-a _job=...``):
        not arguments of the spider, so neither checked nor recorded."""
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not str(k).startswith("_")}
        return data

    def restricted_by(self) -> list[str]:
        """The given arguments that make the crawl list part of its hub only."""
        return [name for name, field in type(self).model_fields.items()
                if isinstance(field.json_schema_extra, dict)
                and field.json_schema_extra.get("restrictsCrawl")
                and getattr(self, name) != field.get_default(call_default_factory=True)]

    @property
    def restricted(self) -> bool:
        """The crawl sees part of its hub only: history infers no removals from it."""
        return not self.lists_whole_hub or bool(self.restricted_by())

    def recorded(self) -> dict[str, Any]:
        """The arguments as the crawl record stores them: those that differ from the default."""
        defaults = {name for name, field in type(self).model_fields.items()
                    if getattr(self, name) == field.get_default(call_default_factory=True)}
        return self.model_dump(mode="json", exclude=defaults)


def parse_params(model: type[SpiderParams], given: Mapping[str, Any], *,
                 spider: str) -> SpiderParams:
    """``given`` (the ``-a`` arguments) validated by ``model``, or an :class:`ArgumentError`
    in one line."""
    try:
        return model.model_validate(dict(given))
    except ValidationError as exc:
        raise ArgumentError(one_line(exc, given, model, spider=spider)) from None


def one_line(exc: ValidationError, given: Mapping[str, Any], model: type[SpiderParams], *,
             spider: str) -> str:
    """``spider: -a name='value': what is wrong; ...``: each problem of ``exc``, one line."""
    names = sorted(model.model_fields)
    problems = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else None
        if error["type"] == "extra_forbidden" and name is not None:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(f"-a {name}={given.get(name)!r}: unknown argument ({hint}"
                            f"{spider} takes {', '.join(names)})")
        elif name is not None:
            problems.append(f"-a {name}={given.get(name)!r}: {_message(error)}")
        else:
            problems.append(_message(error))
    return f"{spider}: {'; '.join(problems)}"


def _message(error: ErrorDetails) -> str:
    """The text of a ``ValueError`` a validator raised, else pydantic's message."""
    cause = (error.get("ctx") or {}).get("error")
    if error["type"] == "value_error" and isinstance(cause, ValueError):
        return str(cause)
    return error["msg"]
