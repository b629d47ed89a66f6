"""Typed configs: the strict base of every config section, cross-field rules, and one line per bad value.

Every section (train, method, task, adapter, the run file, experiment files) is a pydantic v2
`BaseModel` with unknown keys forbidden. `validated(cls, data, where)` turns the first error of a
pydantic ValidationError into one AdaptersGeoError naming where the value came from (the file, or
the `--set` override), the dotted key, the value and what the field allows, read from the field's
own type and bounds (`Literal` choices, `ge` / `gt` / `le` / `lt`, list lengths).

BaseModel rather than pydantic dataclasses: model_validate / model_dump / model_copy / model_fields
are the API the ecosystem speaks (the error rendering below walks model_fields), and the two places
that used dataclasses.replace on a config now use model_copy(update=...).
"""

import difflib
import re
import types
from typing import Annotated, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import BaseModel, ConfigDict, Tag, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from adapters_geo.errors import AdaptersGeoError


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no number may be inf or nan


def rule(key: str, problem: str, fix: str) -> PydanticCustomError:
    """The error of a cross-field rule about field `key` of a section; `problem` and `fix` may say {key}."""
    return PydanticCustomError("config_rule", problem.replace("{key}", key), {"key": key, "problem": problem, "fix": fix})


def validated(cls, data, where: str, overrides: dict | None = None):
    """`cls` (a Section, or an annotated union of them) validated from `data`; a bad value is one AdaptersGeoError."""
    try:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            return cls.model_validate(data)
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        raise one_line(exc, cls, data, where, overrides) from None


# ---- rendering a ValidationError as one line

NOT_A = {  # pydantic error type -> what the value is not
    "int_parsing": "an integer", "int_from_float": "an integer", "int_type": "an integer",
    "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "text", "list_type": "a list", "model_type": "a mapping", "dict_type": "a mapping",
    "model_attributes_type": "a mapping", "finite_number": "a finite number",
}


PLURAL = {"an integer": "integers", "a number": "numbers", "text": "texts", "a mapping": "mappings"}


def one_line(exc: ValidationError, root, data, where: str, overrides: dict | None = None) -> AdaptersGeoError:
    """The first error of `exc` as a problem and a fix: an unknown key first (a typo explains a missing key)."""
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    spot = _locate(root, data, err["loc"])
    key, kind = spot["key"], err["type"]
    where = _origin(key, where, overrides or {})
    if kind == "config_rule":  # a cross-field rule, of a section or of the whole file (then `key` is empty)
        full = ".".join(filter(None, [key, err["ctx"]["key"]]))
        return AdaptersGeoError(f"{where}: {err['ctx']['problem'].replace('{key}', full)}", err["ctx"]["fix"].replace("{key}", full))
    if not key and kind != "union_tag_invalid":
        return AdaptersGeoError(f"{where} does not hold a mapping of sections", "write it as `section: {key: value}` lines")
    if kind == "extra_forbidden":
        name, section = key.rsplit(".", 1)[-1], key.rpartition(".")[0]
        allowed = sorted(spot["section"].model_fields) if spot["section"] else []
        close = difflib.get_close_matches(name, allowed, n=1)
        fix = (f"did you mean '{close[0]}'? " if close else "") + f"use some of: {', '.join(allowed)}"
        return AdaptersGeoError(f"unknown key '{name}' in {where}" + (f": {section}" if section else ""), fix)
    if kind == "missing":
        return AdaptersGeoError(f"{where}: {key} is missing", f"set {key} to {_allowed(spot['info'])}")
    if kind == "union_tag_invalid":
        tags = re.findall(r"'([^']*)'", err["ctx"]["expected_tags"])
        tag_key = ".".join(filter(None, [key, "kind"]))
        return AdaptersGeoError(f"{where}: {tag_key} = {_show(err['ctx']['tag'])} is not allowed",
                                f"set {tag_key} to one of {' | '.join(tags)}")
    complaint = f"is not {NOT_A[kind]}" if kind in NOT_A and not spot["whole"] else "is not allowed"
    allowed = _allowed(spot["info"]) if spot["info"] is not None else err["msg"].replace("Input should be ", "")
    return AdaptersGeoError(f"{where}: {key} = {_show(spot['value'])} {complaint}", f"set {key} to {allowed}")


def _origin(key: str, where: str, overrides: dict) -> str:
    """The file, or the --set override the bad value came from."""
    for name, text in overrides.items():
        if key and (name == key or name.startswith(key + ".") or key.startswith(name + ".")):
            return f"--set {name}={text}"
    return where


def _locate(root, data, loc) -> dict:
    """The dotted key of an error location (union tags and list indices left out), its field and raw value.

    `whole`: the error is about a part of the value (a list item, a union member), so the type is not named.
    """
    if isinstance(root, type) and issubclass(root, BaseModel):
        cls, info = root, None
    else:
        cls, info = None, FieldInfo.from_annotation(root)
    keys, value, section, whole = [], data, None, False
    for part in loc:
        if isinstance(part, int):
            whole = True  # an item of a list: the key and value are the whole list's
            break
        fields = cls.model_fields if cls is not None else {}
        if part not in fields:
            member = _tagged(info, part)
            if member is not None:
                cls = member
                continue
            if cls is None:
                whole = True  # a member of a plain union (str | list[str]): the key and value are the field's
                break
            section, info = cls, None
            keys.append(str(part))
            value = value.get(part) if isinstance(value, dict) else None
            break
        info = fields[part]
        keys.append(part)
        value = value.get(part) if isinstance(value, dict) else None
        cls = info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) else None
    return {"key": ".".join(keys), "info": info, "value": value, "section": section, "whole": whole}


def _tagged(info: FieldInfo | None, tag):
    """The member of a tagged union field chosen by `tag`, or None."""
    if info is None:
        return None
    for member in get_args(info.annotation):
        if get_origin(member) is Annotated:
            cls, *meta = get_args(member)
            if any(isinstance(m, Tag) and m.tag == tag for m in meta):
                return cls
    return None


def _allowed(info: FieldInfo) -> str:
    """What a field accepts, in words: 'a number > 0', 'one of constant | cosine | linear', ..."""
    if info.description:
        return info.description
    return _describe(info.annotation, info.metadata)


def _describe(annotation, metadata) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _describe(args[0], [*args[1:], *metadata])
    if origin in (Union, types.UnionType):
        text = " or ".join(dict.fromkeys(_describe(a, metadata) for a in args if a is not type(None)))
        return text + (" (or null)" if type(None) in args else "")
    if origin is Literal:
        return "one of " + " | ".join(str(a) for a in args)
    if origin is list:
        item = _describe(args[0], []).removeprefix("one of ")
        for one, many in PLURAL.items():
            item = many + item[len(one):] if item.startswith(one) else item
        least = max((m.min_length for m in metadata if isinstance(m, MinLen)), default=0)
        return f"a list of at least {least} {item}" if least >= 2 else f"a {'non-empty ' if least else ''}list of {item}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    words = {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(annotation, str(annotation))
    return words + _bounds(metadata)


def _bounds(metadata) -> str:
    low = next((m for m in metadata if isinstance(m, (Ge, Gt))), None)
    high = next((m for m in metadata if isinstance(m, (Le, Lt))), None)
    if low is not None and high is not None:
        left = "[" if isinstance(low, Ge) else "("
        right = "]" if isinstance(high, Le) else ")"
        return f" in {left}{_num(_bound(low))}, {_num(_bound(high))}{right}"
    if low is not None:
        return f" {'≥' if isinstance(low, Ge) else '>'} {_num(_bound(low))}"
    if high is not None:
        return f" {'≤' if isinstance(high, Le) else '<'} {_num(_bound(high))}"
    return ""


def _bound(m):
    return next(getattr(m, name) for name in ("ge", "gt", "le", "lt") if hasattr(m, name))


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
