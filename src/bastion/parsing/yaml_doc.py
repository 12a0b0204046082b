"""YAML documents read with bounds: no aliases; limited size, nesting, nodes and tags.

PyYAML's ``safe_load`` runs no code, but it does not bound the work: a "billion
laughs" document of a few hundred bytes refers to the same nodes again and again
through aliases (``*name``), so every walk over the loaded data (validation, finding
positions) multiplies its work by the fan-out at each level. Its composer also
recurses once per nesting level, its reader raises an error without a line for a
control character, and its constructor turns any string of digits into an ``int``.

Every YAML document Bastion reads (policies, rule sets, the configuration file) goes
through :func:`compose_yaml` and :func:`construct_yaml` (or :func:`load_yaml`, both in
one), which

* refuse a document over ``max_bytes`` before parsing it, and bytes that are not UTF-8;
* build the node tree from the parser's events (libyaml's parser when PyYAML has it),
  refusing an alias as soon as its event arrives (an anchor alone is harmless), and
  counting nodes and nesting depth on the way, so a hostile document stops at the
  limit, not after the work;
* accept only the tags of plain data (string, integer, float, boolean, null, mapping,
  sequence, timestamp): ``!!python/...``, ``!!binary``, ``!!set`` or ``!custom`` are
  refused; so are numbers longer than :data:`MAX_NUMBER_CHARS` characters and keys
  given twice in one mapping (unless the caller reports those itself);
* turn every reader, scanner, parser and constructor error into a
  :class:`YamlDocError` with a stable ``code`` and the line and column.

Composing a large document allocates a few hundred thousand objects that live until it
is validated; in a process that holds the models, that is enough to set off several
full passes of Python's cyclic garbage collector, each holding the interpreter for
100-400 ms (and so the event loop, whichever thread runs the parse). A node tree has no
cycles, so :func:`collector_paused` holds the collector off while one document is read:
its objects are freed by reference counting when it is done, and those still held when
the pause ends join the oldest generation rather than the youngest (whose next
collection would otherwise walk them all at once: 50 ms for a 50,000-value document).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from bastion.errors import InputError

_CParser: Any
try:  # libyaml's parser: the same events, ten times faster than the Python one
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None

MAX_NUMBER_CHARS = 64
_CORE = "tag:yaml.org,2002:"
_NUMBER_TAGS = frozenset({_CORE + "int", _CORE + "float"})
ALLOWED_TAGS = frozenset(
    _CORE + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
)


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """How big a YAML document may be: bytes (UTF-8), nesting depth of mappings and
    sequences, and nodes (every scalar, mapping and sequence counts one)."""

    max_bytes: int = 1 << 20
    max_depth: int = 32
    max_nodes: int = 50_000


DEFAULT_LIMITS = YamlLimits()


class YamlDocError(InputError):
    """A YAML document Bastion does not read; ``line`` and ``column`` are 1-based."""

    code = "invalid_yaml"
    status = 422

    def __init__(
        self, problem: str, line: int, column: int, *, source: str = "<yaml>", code: str = ""
    ) -> None:
        self.problem = problem
        self.line = line
        self.column = column
        super().__init__(
            f"{source}:{line}:{column}: {problem}",
            code=code or None,
            details={"line": line, "column": column, "problem": problem},
        )


class YamlTooLarge(YamlDocError):
    code = "yaml_too_large"
    status = 413


class YamlTooManyNodes(YamlDocError):
    code = "yaml_too_many_nodes"
    status = 413


class YamlTooDeep(YamlDocError):
    code = "yaml_too_deep"


class YamlAliasRefused(YamlDocError):
    code = "yaml_alias"


class YamlTagRefused(YamlDocError):
    code = "yaml_tag"


class YamlDuplicateKey(YamlDocError):
    code = "yaml_duplicate_key"


class YamlEncodingError(YamlDocError):
    code = "yaml_encoding"


class YamlSyntaxError(YamlDocError):
    code = "yaml_syntax"


class YamlBadValue(YamlDocError):
    code = "yaml_bad_value"


_collector = threading.Lock()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold Python's cyclic garbage collector off while the body runs (one document's
    parse and validation, bounded by the limits). One holder at a time: a parse that
    starts while another holds it runs as it is, so the collector is never held off for
    longer than one parse."""
    if not _collector.acquire(blocking=False):
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # what the parse allocated (a tree the caller may still hold, an error holding
        # it) would all be in the youngest generation, and the first collection after
        # this would walk it in one go: move it to the oldest one instead (two list
        # splices), where full collections see it as they see every long-lived object
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()
        _collector.release()


def _line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character ``index`` of ``text``."""
    index = max(0, min(index, len(text)))
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _at(mark: Any) -> tuple[int, int]:
    if mark is None:
        return 1, 1
    return int(mark.line) + 1, int(mark.column) + 1


def _text_of(data: str | bytes, limits: YamlLimits, source: str) -> str:
    """The document as text: size checked before anything else, UTF-8 checked."""
    if len(data) > limits.max_bytes:
        raise YamlTooLarge(
            f"the document is over the limit of {limits.max_bytes} bytes", 1, 1, source=source
        )
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line, column = _line_column(data[: exc.start].decode("utf-8", "replace"), exc.start)
            raise YamlEncodingError(
                f"the document is not UTF-8: byte 0x{data[exc.start]:02x} cannot be read",
                line,
                column,
                source=source,
            ) from None
    try:
        size = len(data.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate
        line, column = _line_column(data, exc.start)
        raise YamlEncodingError(
            "the document holds a character that is not valid Unicode",
            line,
            column,
            source=source,
        ) from None
    if size > limits.max_bytes:
        raise YamlTooLarge(
            f"the document is over the limit of {limits.max_bytes} bytes", 1, 1, source=source
        )
    return data.removeprefix("\ufeff")


def _reader_position(text: str, exc: yaml.reader.ReaderError, from_bytes: bool) -> tuple[int, int]:
    position = int(exc.position)
    if from_bytes:  # libyaml counts bytes of the UTF-8 text
        prefix = text.encode("utf-8")[:position].decode("utf-8", "replace")
        return _line_column(prefix, len(prefix))
    return _line_column(text, position)


def _error_of(exc: yaml.YAMLError, text: str, from_bytes: bool, source: str) -> YamlDocError:
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _reader_position(text, exc, from_bytes)
        problem = f"character #x{exc.character:04x} is not allowed in YAML ({exc.reason})"
        return YamlSyntaxError(problem, line, column, source=source)
    if isinstance(exc, yaml.MarkedYAMLError):
        line, column = _at(exc.problem_mark or exc.context_mark)
        problem = str(exc.problem or exc.context or "invalid YAML")
        if exc.context and exc.problem:
            problem = f"{exc.context}: {exc.problem}"
        cls: type[YamlDocError] = (
            YamlBadValue if isinstance(exc, yaml.constructor.ConstructorError) else YamlSyntaxError
        )
        if "maximum nesting depth" in problem:  # libyaml's own bound, met while scanning ahead
            cls = YamlTooDeep
        return cls(problem, line, column, source=source)
    return YamlSyntaxError(str(exc)[:200] or "invalid YAML", 1, 1, source=source)


@dataclass(slots=True)
class _Open:
    """A mapping or sequence being composed, and a mapping's key waiting for its value."""

    node: yaml.MappingNode | yaml.SequenceNode
    key: yaml.Node | None = None
    keys: dict[tuple[str, str], int] = field(default_factory=dict)


class _Composer:
    """Builds nodes from parser events without recursion, within the limits."""

    def __init__(self, events: Any, limits: YamlLimits, unique_keys: bool, source: str) -> None:
        self.events = events
        self.limits = limits
        self.unique_keys = unique_keys
        self.source = source
        self.resolver: Any = Resolver()
        self.nodes = 0

    def _fail(self, cls: type[YamlDocError], problem: str, mark: Any) -> YamlDocError:
        line, column = _at(mark)
        return cls(problem, line, column, source=self.source)

    def document(self) -> yaml.Node | None:
        self.events.get_event()  # stream start
        if self.events.check_event(yaml.StreamEndEvent):
            return None
        self.events.get_event()  # document start
        root = self._node()
        self.events.get_event()  # document end
        if not self.events.check_event(yaml.StreamEndEvent):
            extra = self.events.get_event()
            raise self._fail(
                YamlSyntaxError, "expected a single document, found another", extra.start_mark
            )
        return root

    def _tag(self, event: Any, kind: type[yaml.Node]) -> str:
        tag: str | None = event.tag
        if tag is None or tag == "!":
            value = event.value if kind is yaml.ScalarNode else None
            return str(self.resolver.resolve(kind, value, event.implicit))
        if tag not in ALLOWED_TAGS:
            raise self._fail(
                YamlTagRefused,
                f"tag {tag!r} is not accepted: only plain strings, numbers, booleans, nulls, "
                "mappings and sequences",
                event.start_mark,
            )
        return tag

    def _count(self, event: Any) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise self._fail(
                YamlTooManyNodes,
                f"the document has more than {self.limits.max_nodes} values",
                event.start_mark,
            )

    def _scalar(self, event: Any) -> yaml.ScalarNode:
        tag = self._tag(event, yaml.ScalarNode)
        if tag in _NUMBER_TAGS and len(event.value) > MAX_NUMBER_CHARS:
            raise self._fail(
                YamlBadValue,
                f"a number of more than {MAX_NUMBER_CHARS} characters",
                event.start_mark,
            )
        return yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)

    def _attach(self, parent: _Open, node: yaml.Node) -> None:
        if isinstance(parent.node, yaml.SequenceNode):
            parent.node.value.append(node)
            return
        if parent.key is None:
            parent.key = node
            return
        key, parent.key = parent.key, None
        if self.unique_keys and isinstance(key, yaml.ScalarNode):
            ident = (str(key.tag), str(key.value))
            first = parent.keys.get(ident)
            if first is not None:
                raise self._fail(
                    YamlDuplicateKey,
                    f"key {key.value!r} given twice (first on line {first})",
                    key.start_mark,
                )
            parent.keys[ident] = int(key.start_mark.line) + 1
        parent.node.value.append((key, node))

    def _node(self) -> yaml.Node:
        stack: list[_Open] = []
        while True:
            event: Any = self.events.get_event()
            node: yaml.Node
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                node = stack.pop().node
                node.end_mark = event.end_mark
            elif isinstance(event, yaml.AliasEvent):
                raise self._fail(
                    YamlAliasRefused,
                    f"YAML aliases (*{event.anchor}) are not accepted: write the value out",
                    event.start_mark,
                )
            elif isinstance(event, yaml.ScalarEvent):
                self._count(event)
                node = self._scalar(event)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                self._count(event)
                if len(stack) >= self.limits.max_depth:
                    raise self._fail(
                        YamlTooDeep,
                        f"the document is nested deeper than {self.limits.max_depth} levels",
                        event.start_mark,
                    )
                start: Any = event.start_mark
                if isinstance(event, yaml.SequenceStartEvent):
                    tag = self._tag(event, yaml.SequenceNode)
                    opened: yaml.MappingNode | yaml.SequenceNode = yaml.SequenceNode(
                        tag, [], start, None, flow_style=event.flow_style
                    )
                else:
                    tag = self._tag(event, yaml.MappingNode)
                    opened = yaml.MappingNode(tag, [], start, None, flow_style=event.flow_style)
                stack.append(_Open(opened))
                continue
            else:
                raise self._fail(
                    YamlSyntaxError, f"unexpected {type(event).__name__}", event.start_mark
                )
            if not stack:
                return node
            self._attach(stack[-1], node)


def compose_yaml(
    data: str | bytes,
    limits: YamlLimits = DEFAULT_LIMITS,
    *,
    unique_keys: bool = True,
    source: str = "<yaml>",
) -> yaml.Node | None:
    """The node tree of a single-document YAML text (None when it is empty).

    Raises a :class:`YamlDocError` subclass for anything over ``limits``, an alias, a
    tag other than plain data, a number too long, a key given twice (with
    ``unique_keys``), bytes that are not UTF-8, or invalid YAML."""
    text = _text_of(data, limits, source)
    from_bytes = _CParser is not None
    try:
        events: Any = _CParser(text) if _CParser is not None else yaml.SafeLoader(text)
        return _Composer(events, limits, unique_keys, source).document()
    except yaml.YAMLError as exc:
        raise _error_of(exc, text, from_bytes, source) from None


def construct_yaml(node: yaml.Node | None, *, source: str = "<yaml>") -> Any:
    """Python data (dicts, lists, strings, numbers, ...) from a composed node tree."""
    if node is None:
        return None
    try:
        return SafeConstructor().construct_document(node)
    except yaml.YAMLError as exc:
        raise _error_of(exc, "", False, source) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date that does not exist
        line, column = _at(node.start_mark)
        raise YamlBadValue(f"a value cannot be read: {exc}", line, column, source=source) from None


def load_yaml(
    data: str | bytes,
    limits: YamlLimits = DEFAULT_LIMITS,
    *,
    unique_keys: bool = True,
    source: str = "<yaml>",
) -> Any:
    """:func:`compose_yaml` then :func:`construct_yaml`: the data of a YAML text."""
    node = compose_yaml(data, limits, unique_keys=unique_keys, source=source)
    return construct_yaml(node, source=source)
