"""JSON from outside — a request body, a queue message, an API's answer — read with a bound on its nesting.

``json.loads`` raises ``RecursionError``, not ``ValueError``, on a body nested about a thousand deep, and a
value nested a little less deep parses, then fails later wherever it is walked again (``repr``, a log line). No
Slack or GitHub payload nests more than a dozen levels, so anything past :data:`MAX_DEPTH` is malformed input:
:func:`read_json` raises ``ValueError`` for it, as for any other text that is not JSON.
"""

from __future__ import annotations

import json
from typing import Any, Final

MAX_DEPTH: Final = 64


def read_json(text: str | bytes) -> Any:
    """The JSON value in ``text``; ``ValueError`` (one line) when it is not JSON, or nests past :data:`MAX_DEPTH`."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested more than {MAX_DEPTH} deep") from None
    if _deeper_than(value, MAX_DEPTH):
        raise ValueError(f"JSON nested more than {MAX_DEPTH} deep")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    # Walked with a list, not recursion: the point is to never recurse on what came in.
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False
