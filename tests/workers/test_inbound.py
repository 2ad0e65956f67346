"""JSON from outside read with a bound on nesting (:mod:`workers.protocol.inbound`), and the queue messages read
with it: deep input is malformed input — a ``ValueError`` — never a ``RecursionError``."""

from __future__ import annotations

import pytest

from workers.protocol.envelope import EnvelopeError, read_message
from workers.protocol.inbound import MAX_DEPTH, read_json


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_as_deep_as_the_bound_is_read() -> None:
    value = read_json(nested(MAX_DEPTH))
    for _ in range(MAX_DEPTH - 1):
        [value] = value
    assert value == []
    assert read_json(b'{"a": {"b": [1, "x", null]}}') == {"a": {"b": [1, "x", None]}}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 1_000, 100_000])
def test_json_nested_past_the_bound_is_a_value_error(depth: int) -> None:
    with pytest.raises(ValueError, match=f"^JSON nested more than {MAX_DEPTH} deep$"):
        read_json(nested(depth))


def test_a_queue_message_nested_too_deep_is_not_one_of_ours() -> None:
    body = '{"version": 1, "kind": "workflow_run", "x": ' + nested(5_000) + "}"
    with pytest.raises(EnvelopeError, match=r"^message body: not JSON we read"):
        read_message(body)
