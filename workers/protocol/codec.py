"""One way a frozen dataclass goes on the wire and comes back: a JSON object, checked field by field on the way in.

- Field names are camelCase (``request_id`` → ``requestId``), in the dataclass's order, after ``"kind"`` when the
  class has one (a ``kind`` class variable or property).
- Values: ``str``, ``int``, ``bool``, ``None``, an :class:`~enum.Enum` (its value), ``tuple[X, ...]`` (a list), a
  dataclass (an object), and a union of dataclasses told apart by their ``"kind"``.
- ``kind_from`` (a class variable) names the field the kind comes from: an enum field is carried by the kind
  alone (``Dispatch.action``: ``"kind": "build"``); a tagged field is written too, and must agree with the kind.
- Every field is written. A field marked :data:`WHEN_SET` is written only when it is not its default — for fields
  that every reader, older ones included, takes as optional. A field missing from the object is its default when
  it has one, else an error: adding an optional field is one dataclass line, and old bodies still read.
- Unknown names are ignored, so an older reader takes a newer body.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

WHEN_SET: Mapping[str, bool] = types.MappingProxyType({"when set": True})
"""A field's ``metadata``: on the wire only when it is not its default."""

T = TypeVar("T")


class WireError(ValueError):
    """A value that is not what its field says: one line, with the field's path (``command.ref: …``)."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# ------------------------------------------------------------------------------------------------- writing
def to_wire(value: Any) -> dict[str, Any]:
    """A dataclass as a JSON object (``"kind"`` first when it has one)."""
    data: dict[str, Any] = {}
    kind = getattr(value, "kind", None)
    if isinstance(kind, str):
        data["kind"] = kind
    carried = _carried_by_kind(type(value))
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if field.name == carried or (field.metadata.get("when set") and item == field.default):
            continue
        data[camel(field.name)] = _plain(item)
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_wire(value)
    return value


# ------------------------------------------------------------------------------------------------- reading
def from_wire(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """``data`` as a ``cls``; :class:`WireError` naming the first field that is not what it should be."""
    kind = data.get("kind")
    hints = _hints(cls)
    carried = _carried_by_kind(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = camel(field.name)
        if field.name == carried:
            values[field.name] = _enum(hints[field.name], kind, f"{where}kind")
        elif name in data:
            values[field.name] = _read(hints[field.name], data[name], f"{where}{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            values[field.name] = _read(hints[field.name], None, f"{where}{name}")  # null, or what was expected
    value = cls(**values)
    if kind is not None and getattr(value, "kind", kind) != kind:
        raise WireError(f"{where}kind {kind!r} does not match {value.kind!r}")  # type: ignore[attr-defined]
    return value


def from_tagged(union: Any, data: Any, where: str = "") -> Any:
    """``data`` as the member of ``union`` (a union of dataclasses) its ``"kind"`` names."""
    if not isinstance(data, Mapping):
        raise WireError(f"{where.rstrip('.') or 'body'}: expected an object")
    kind = data.get("kind")
    cls = kinds_of(union).get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"{where}kind: unknown kind {kind!r}")
    return from_wire(cls, data, where)


@cache
def kinds_of(union: Any) -> Mapping[str, type]:
    """Each kind a union of dataclasses can have, and the member that has it."""
    found: dict[str, type] = {}
    for cls in get_args(union) or (union,):
        carried = getattr(cls, "kind_from", None)
        if carried is None:
            found[cls.kind] = cls
            continue
        hint = _hints(cls)[carried]
        kinds = [member.value for member in hint] if _is_enum(hint) else list(kinds_of(hint))
        found.update(dict.fromkeys(kinds, cls))
    return types.MappingProxyType(found)


def _read(hint: Any, value: Any, where: str) -> Any:
    if _is_union(hint):
        members = [arg for arg in get_args(hint) if arg is not type(None)]
        if value is None and len(members) < len(get_args(hint)):
            return None
        if all(dataclasses.is_dataclass(member) for member in members):
            return from_tagged(hint, value, f"{where}.")
        [member] = members
        try:
            return _read(member, value, where)
        except WireError:
            raise WireError(f"{where}: expected {_expected(member)} or null") from None
    if get_origin(hint) is tuple:
        if not isinstance(value, list):
            raise WireError(f"{where}: expected a list")
        return tuple(_read(get_args(hint)[0], item, f"{where}[{index}]") for index, item in enumerate(value))
    if _is_enum(hint):
        return _enum(hint, value, where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise WireError(f"{where}: expected an object")
        return from_wire(hint, value, f"{where}.")  # type: ignore[arg-type]
    if type(value) is not hint or hint not in (str, int, bool):  # a bool is not a number here
        raise WireError(f"{where}: expected {_expected(hint)}")
    return value


def _enum(hint: type[Enum], value: Any, where: str) -> Enum:
    try:
        return hint(value)
    except ValueError:
        raise WireError(f"{where}: expected one of {', '.join(str(m.value) for m in hint)}") from None


def _expected(hint: Any) -> str:
    return {str: "a string", int: "a whole number", bool: "a boolean"}.get(hint, getattr(hint, "__name__", "?"))


def _carried_by_kind(cls: type) -> str | None:
    """The field the kind alone carries: ``kind_from``, when that field is an enum."""
    carried = getattr(cls, "kind_from", None)
    return carried if carried is not None and _is_enum(_hints(cls)[carried]) else None


def _hints(cls: Any) -> Mapping[str, Any]:
    return get_type_hints(cls)


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Enum)
