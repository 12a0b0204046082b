"""JSON bodies parsed with bounds: size, item count and nesting depth.

``json.loads`` is C code that holds the interpreter for its whole run (1.5 M keys take
over a second) and recurses until a ``RecursionError``. So the count of items is
bounded first from the raw bytes (every item needs a ``,`` ``:`` ``[`` or ``{``; the
count over-estimates only when strings contain those characters), then the text is
parsed, then the depth is checked by an iterative walk. Large bodies are parsed in a
worker thread (:func:`parse_json_async`) so the event loop keeps answering.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from bastion.errors import InputError

MAX_DEPTH = 32
MAX_ITEMS = 20_000
_THREAD_ABOVE = 64 * 1024  # bytes; smaller bodies parse in well under a millisecond
_STRUCTURAL = (b",", b":", b"[", b"{")


class InvalidJson(InputError):
    code = "invalid_json"
    status = 400


class JsonTooDeep(InputError):
    code = "json_too_deep"
    status = 400


class TooManyItems(InputError):
    code = "too_many_items"
    status = 413


def _count_upper_bound(data: bytes) -> int:
    return sum(data.count(c) for c in _STRUCTURAL)


def _check_depth(value: Any, max_depth: int, max_items: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    items = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth >= max_depth:
            raise JsonTooDeep(
                f"JSON is nested deeper than {max_depth} levels",
                details={"max_depth": max_depth},
            )
        items += len(node)
        if items > max_items:
            raise TooManyItems(
                f"JSON has more than {max_items} items", details={"max_items": max_items}
            )
        stack.extend((child, depth + 1) for child in children)


def parse_json(data: bytes | str, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> Any:
    """Parse ``data``; raises :class:`InvalidJson` (400 ``invalid_json``),
    :class:`JsonTooDeep` (400 ``json_too_deep``) or :class:`TooManyItems`
    (413 ``too_many_items``). Empty input parses as ``None``."""
    raw = data.encode() if isinstance(data, str) else data
    if _count_upper_bound(raw) > 4 * max_items:
        raise TooManyItems(
            f"JSON has more than {max_items} items", details={"max_items": max_items}
        )
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonTooDeep(
            f"JSON is nested deeper than {max_depth} levels", details={"max_depth": max_depth}
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        message = str(exc)[:200]
        raise InvalidJson(f"body is not valid JSON: {message}") from None
    _check_depth(value, max_depth, max_items)
    return value


async def parse_json_async(
    data: bytes | str, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS
) -> Any:
    """:func:`parse_json`, in a worker thread when ``data`` is large."""
    if len(data) <= _THREAD_ABOVE:
        return parse_json(data, max_depth=max_depth, max_items=max_items)
    return await anyio.to_thread.run_sync(
        lambda: parse_json(data, max_depth=max_depth, max_items=max_items)
    )
