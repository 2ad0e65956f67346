"""Conditions and updates on one lock item, as data.

The rules in :mod:`lockcore.machine` are written once, as these small expression trees. The in-memory store
evaluates them here, with DynamoDB's semantics; the DynamoDB store compiles the very same trees into a
``ConditionExpression`` and an ``UpdateExpression``. Neither store decides a rule of its own.

DynamoDB semantics kept here on purpose: a comparison with an attribute that is absent is false, and values of
different types never compare (a number is not equal to, or less than, a string).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Value = str | int
Item = dict[str, Value]


@dataclass(frozen=True)
class Missing:
    """The item itself does not exist."""


@dataclass(frozen=True)
class Absent:
    """The item has no attribute ``name`` (or does not exist)."""

    name: str


@dataclass(frozen=True)
class Equals:
    name: str
    value: Value


@dataclass(frozen=True)
class OneOf:
    name: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class AtMost:
    """``name <= value``."""

    name: str
    value: int


@dataclass(frozen=True)
class Above:
    """``name > value``."""

    name: str
    value: int


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Guard, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Guard, ...]


@dataclass(frozen=True)
class Not:
    """The guard ``part`` does not hold (DynamoDB's ``NOT``: also true where ``part`` compares an absent
    attribute, since that comparison is false)."""

    part: Guard


Guard = Missing | Absent | Equals | OneOf | AtMost | Above | AllOf | AnyOf | Not


def _same_type(a: Value, b: Value) -> bool:
    # bool is an int in Python but never a DynamoDB number; no lock attribute is a bool.
    return isinstance(a, int) == isinstance(b, int)


def holds(guard: Guard, item: Mapping[str, Value] | None) -> bool:
    """Evaluate ``guard`` on ``item`` (``None`` when the item does not exist), as DynamoDB would."""
    match guard:
        case Missing():
            return item is None
        case Absent(name):
            return item is None or name not in item
        case AllOf(parts):
            return all(holds(part, item) for part in parts)
        case AnyOf(parts):
            return any(holds(part, item) for part in parts)
        case Not(part):
            return not holds(part, item)
    if item is None:
        return False
    match guard:
        case Equals(name, value):
            return name in item and _same_type(item[name], value) and item[name] == value
        case OneOf(name, values):
            return name in item and any(_same_type(item[name], v) and item[name] == v for v in values)
        case AtMost(name, value):
            current = item.get(name)
            return isinstance(current, int) and current <= value
        case Above(name, value):
            current = item.get(name)
            return isinstance(current, int) and current > value
    raise TypeError(f"not a guard: {guard!r}")  # pragma: no cover


@dataclass(frozen=True)
class Effect:
    """What a write does to the item: set these attributes, remove those, maybe move the fencing token."""

    set: Mapping[str, Value]
    remove: frozenset[str] = field(default_factory=frozenset)
    bump: str | None = None
    """The name of a counter to raise by one (starting from 0 when absent), in the same write."""


def apply(effect: Effect, key: Mapping[str, Value], item: Mapping[str, Value] | None) -> Item:
    """The item after ``effect``; UpdateItem creates the item (with its key) when it does not exist."""
    new: Item = dict(item) if item is not None else dict(key)
    for name in effect.remove:
        new.pop(name, None)
    new.update(effect.set)
    if effect.bump is not None:
        current = new.get(effect.bump, 0)
        new[effect.bump] = (current if isinstance(current, int) else 0) + 1
    return new
