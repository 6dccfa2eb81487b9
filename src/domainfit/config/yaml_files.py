"""Read the YAML of every file that configures domainfit (run, pretrain and pipeline configs) strictly.

PyYAML's ``safe_load`` lets three things through that this refuses, each with one :class:`ConfigError`
that names the file and line:

- a key given twice in one mapping (two ``train:`` sections, or ``epochs:`` twice in one): ``safe_load``
  keeps the last silently, so half of what the user wrote is ignored;
- aliases (``*name``) that expand to more than :data:`MAX_EXPANDED_NODES` values: a "billion laughs"
  document is a few hundred bytes that expand to gigabytes when walked or printed;
- nesting deep enough to exhaust Python's recursion limit while parsing.

Anchors and aliases within that size (including ``<<: *defaults`` merge keys) keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from domainfit.errors import ConfigError, short_repr

# A real config holds a few hundred values; this leaves room for big lists (class weights, seeds) and
# stops an alias bomb long before it costs memory or time.
MAX_EXPANDED_NODES = 100_000


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping holds the same key twice (``key``, on ``first_line`` and ``problem_mark.line + 1``)."""

    def __init__(self, key: Any, first_line: int, mark: yaml.Mark) -> None:
        super().__init__(problem=f"duplicate key {key!r}", problem_mark=mark)
        self.key = key
        self.first_line = first_line


class _TooLarge(yaml.YAMLError):
    """The document's aliases expand to more than MAX_EXPANDED_NODES values (under ``keys``, dotted)."""

    def __init__(self, keys: list[str], mark: yaml.Mark) -> None:
        super().__init__(f"more than {MAX_EXPANDED_NODES} values under {keys}")
        self.keys = keys
        self.problem_mark = mark


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and documents whose aliases expand too far."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's scalar constructors raise plain Python errors on some input that matches their pattern
        # (month 13, a 5000-digit integer, !!float abc): make them YAML errors that carry the line
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError, AttributeError) as e:
            raise yaml.constructor.ConstructorError(
                problem=f"cannot read {short_repr(node.value, 60)} as {node.tag.rsplit(':', 1)[-1]}",
                problem_mark=node.start_mark,
            ) from e

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            # merge keys (``<<: *defaults``) may legitimately be overridden by explicit keys, and a
            # non-scalar key is left to PyYAML (it reports an unhashable key itself)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_lines:
                raise _DuplicateKey(key, first_lines[key], key_node.start_mark)
            first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(root: yaml.Node) -> None:
    """Raise _TooLarge if the document, with every alias expanded, holds more than MAX_EXPANDED_NODES values.

    An alias is the same node object as its anchor, so sizes are memoised by node: the count is linear in
    the document as written, however far it expands.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = 1  # a recursive alias (a node inside itself) counts once instead of looping
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        # counting stops just past the limit: a bomb's true size can have more digits than Python will print
        sizes[id(node)] = min(total, MAX_EXPANDED_NODES + 1)
        return sizes[id(node)]

    if size(root) <= MAX_EXPANDED_NODES:
        return
    # the keys whose values hold the expansion, as deep as mappings go, so the message can name them
    found: list[tuple[str, yaml.Mark]] = []
    seen: set[int] = set()

    def find(node: yaml.Node, prefix: str) -> None:
        seen.add(id(node))
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or size(value_node) <= MAX_EXPANDED_NODES:
                continue
            dotted = f"{prefix}{key_node.value}"
            before = len(found)
            if isinstance(value_node, yaml.MappingNode) and id(value_node) not in seen:
                find(value_node, f"{dotted}.")
            if len(found) == before:
                found.append((dotted, key_node.start_mark))

    if isinstance(root, yaml.MappingNode):
        find(root, "")
    raise _TooLarge([dotted for dotted, _ in found], found[0][1] if found else root.start_mark)


def read_yaml_file(path: Path) -> Any:
    """The parsed content of a YAML config file (None for an empty one).

    Args:
        path: the file (it must exist).

    Returns:
        Whatever the document holds; the caller checks its shape.

    Raises:
        ConfigError: not UTF-8, not valid YAML, a duplicate key, an alias bomb, or nesting too deep; the
            message names the file and the line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("config file is not UTF-8 text", path=path, fix="save it as UTF-8.") from e
    return parse_yaml(text, path=path)


def parse_yaml(text: str, *, path: Path | None = None, key: str | None = None) -> Any:
    """Parse YAML text (a file's content, or an override's value) with :class:`StrictLoader`.

    Args:
        text: the YAML text.
        path: the file it came from, for the message.
        key: the override key it is the value of, for the message.

    Returns:
        The parsed value.

    Raises:
        ConfigError: as :func:`read_yaml_file`.
    """
    where = {"path": path, "key": key}
    try:
        return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader
    except _DuplicateKey as e:
        first, line = e.first_line, e.problem_mark.line + 1
        raise ConfigError(
            f"key {short_repr(e.key)} is given twice, on line {first} and on line {line}: "
            "YAML would silently keep only the second",
            **where,
            line=line if path else None,
            fix=f"merge the two into one (delete or rename the one on line {first} or {line}).",
        ) from e
    except _TooLarge as e:
        under = f" under {', '.join(repr(k) for k in e.keys[:5])}" if e.keys else ""
        raise ConfigError(
            f"the aliases (*name){under} expand to more than the {MAX_EXPANDED_NODES:,} values "
            "a config may hold (a 'billion laughs' document?)",
            **where,
            line=e.problem_mark.line + 1 if path else None,
            fix="write the values out instead of nesting aliases of aliases.",
        ) from e
    except RecursionError as e:
        raise ConfigError(
            "the YAML is nested too deeply to read",
            **where,
            fix="a config needs only a few levels of sections: look for runaway brackets.",
        ) from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        if path is None:
            raise ConfigError(
                f"the value is not valid YAML: {getattr(e, 'problem', None) or e}",
                key=key,
                fix="quote the value to keep it as text, e.g. \"model.name='[draft]'\" in a shell.",
            ) from e
        raise ConfigError(
            f"not valid YAML: {getattr(e, 'problem', None) or e}",
            path=path,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            fix="check indentation and quoting on that line.",
        ) from e


def read_workflow_file(path: str | Path, overrides: list[str] | None, keys: set[str], *, kind: str) -> dict[str, Any]:
    """A workflow YAML (pipeline, tune): a mapping of top-level ``keys``, with ``key=value`` overrides applied.

    Args:
        path: the YAML file.
        overrides: ``key=value`` strings for top-level keys (values parsed as YAML).
        keys: the keys the file may hold; any other is refused, naming it.
        kind: what the file is, for the messages ("pipeline", "tune").
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} config not found", path=path, fix="check the path.")
    raw = read_yaml_file(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping at the top level", path=path)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise ConfigError(
                f"override {short_repr(item)}: expected KEY=VALUE with KEY one of {', '.join(sorted(keys))}", path=path
            )
        raw[key] = parse_yaml(value, key=key)
    unknown = sorted(map(str, set(raw) - keys))  # YAML keys may be numbers or null
    if unknown:
        raise ConfigError(
            f"unknown key(s): {short_repr(', '.join(unknown))}",
            path=path,
            key=unknown[0],
            fix=f"valid keys: {', '.join(sorted(keys))}.",
        )
    return raw
