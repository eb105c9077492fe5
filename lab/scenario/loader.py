"""Reading scenario files, and error messages that name the file, the field and what was expected.

    toxics/x.yml: faults[2].action.latency: expected a duration like '500ms', ... (line 23)

pydantic's locations are rewritten into the path as written in the file: list indices in brackets,
the union tags pydantic inserts for discriminated unions left out, and the YAML line attached.
"""

from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lab.durations import format_duration
from lab.scenario.checks import ScenarioIssues, reference_issues
from lab.scenario.models import Scenario


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f" (line {self.line})" if self.line else ""
        field = f"{self.path}: " if self.path else ""
        return f"{source}: {field}{self.message}{where}"


class ScenarioError(ValueError):
    """A scenario that cannot be used; `problems` lists every field at fault."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.render(source) for p in problems))


MAX_BYTES = 1 << 20  # a scenario is a page of YAML; more is a wrong file (or /dev/zero)


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario file (YAML or JSON); ScenarioError on any problem."""
    source = str(path)
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(source, [Problem("", f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_BYTES:
        raise ScenarioError(source, [Problem("", f"larger than {MAX_BYTES >> 20} MiB: not a scenario file")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            source, [Problem("", f"not a text file (byte {exc.start} is not UTF-8): expected YAML or JSON")]
        ) from None
    return parse_scenario(text, source=source)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping (PyYAML would keep the last one silently)."""

    def __init__(self, key: Any, key_node: yaml.Node, first: yaml.Node) -> None:
        super().__init__(
            problem=f"duplicate key {key!r} (first on line {first.start_mark.line + 1})",
            problem_mark=key_node.start_mark,
        )
        self.key_node = key_node
        self.path = ""  # where in the document, once known


class _ScenarioLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults`: keys given beside it override the merged ones, as intended
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not key_node:
                raise DuplicateKeyError(key, key_node, first)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for locations) and its data."""
    loader = _ScenarioLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        try:
            return root, loader.construct_document(root)
        except DuplicateKeyError as exc:
            exc.path = _render(_path_to(root, exc.key_node))
            raise
    finally:
        loader.dispose()


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    try:
        root, data = _read_yaml(text)
    except DuplicateKeyError as exc:
        line = exc.key_node.start_mark.line + 1
        raise ScenarioError(source, [Problem(exc.path, str(exc.problem), line)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ScenarioError(source, [Problem("", f"not valid YAML: {problem}", line)]) from None
    except RecursionError:
        raise ScenarioError(source, [Problem("", "nested too deeply to be a scenario")]) from None
    if not isinstance(data, dict):
        raise ScenarioError(
            source, [Problem("", "expected a mapping with name, topology, load, faults, slos")]
        )
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, problems_of(exc, root, data)) from None


def with_overrides(
    scenario: Scenario,
    source: str,
    *,
    duration: float | None = None,
    users: int | None = None,
    seed: int | None = None,
) -> Scenario:
    """`Scenario.with_overrides`, with a problem (e.g. a fault starting after a shortened run's end)
    reported as a ScenarioError naming the field and the command-line option that caused it."""
    try:
        return scenario.with_overrides(duration=duration, users=users, seed=seed)
    except ValidationError as exc:
        given = {
            "--duration": None if duration is None else format_duration(duration),
            "--users": users,
            "--seed": seed,
        }
        options = ", ".join(f"{name} {value}" for name, value in given.items() if value is not None)
        problems = [
            Problem(p.path, f"{p.message} (with {options})", None)
            for p in problems_of(exc, None, scenario.model_dump(mode="json"))
        ]
        raise ScenarioError(source, problems) from None


def problems_of(exc: ValidationError, root: yaml.Node | None, data: Any) -> list[Problem]:
    """Every problem of a scenario that failed validation, field errors and reference errors alike."""
    problems = describe_errors(exc, root)
    reported = {p.path for p in problems}
    problems += [
        Problem(path, message, _line(root, _split(path)))
        for path, message in reference_issues(data)
        if path not in reported
    ]
    return sorted(problems, key=lambda p: p.line or 0)


def describe_errors(exc: ValidationError, root: yaml.Node | None = None) -> list[Problem]:
    """pydantic's errors on a Scenario as problems with paths in the input and YAML lines."""
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ScenarioIssues):
            problems += [Problem(path, message, _line(root, _split(path))) for path, message in cause.issues]
            continue
        elements, node = _input_location(loc, root)
        message = _message(err, loc)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            elements = [*elements, "type"]
        problems.append(Problem(_render(elements), message, _node_line(node)))
    return sorted(problems, key=lambda p: p.line or 0)


# --- locations -----------------------------------------------------------------------------------------


def _mapping_get(node: Any, key: Any) -> Any:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                return value_node
    return None


def _input_location(loc: tuple[Any, ...], root: Any, *, skip_tags: bool = True) -> tuple[list[Any], Any]:
    """The loc without union tags, and the deepest YAML node found along it."""
    elements: list[Any] = []
    node = root
    tag_skipped_at: Any = None
    for element in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(element, str):
            type_node = _mapping_get(node, "type")
            is_tag = isinstance(type_node, yaml.ScalarNode) and type_node.value == element
            if skip_tags and is_tag and node is not tag_skipped_at:
                tag_skipped_at = node  # the discriminator tag pydantic adds, not a field of the input
                continue
            value = _mapping_get(node, element)
            elements.append(element)
            node = value if value is not None else node
        elif isinstance(node, yaml.SequenceNode) and isinstance(element, int):
            elements.append(element)
            node = node.value[element] if 0 <= element < len(node.value) else node
        else:
            elements.append(element)
    return elements, node


def _path_to(root: yaml.Node, target: yaml.Node) -> list[Any]:
    """The path from `root` to the mapping key node `target` (empty when it is not found)."""
    stack: list[tuple[yaml.Node, list[Any]]] = [(root, [])]
    seen: set[int] = set()  # aliases can make the tree a graph, even a cyclic one
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                if key_node is target:
                    return [*path, key]
                stack.append((value_node, [*path, key]))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, [*path, i]) for i, item in enumerate(node.value)]
    return []


def _split(path: str) -> list[Any]:
    elements: list[Any] = []
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        elements.append(int(part[1:-1]) if part.startswith("[") else part)
    return elements


def _line(root: Any, elements: list[Any]) -> int | None:
    return _node_line(_input_location(tuple(elements), root, skip_tags=False)[1])


def _node_line(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def _render(elements: list[Any]) -> str:
    out = ""
    for element in elements:
        out += f"[{element}]" if isinstance(element, int) else (f".{element}" if out else str(element))
    return out


# --- messages ------------------------------------------------------------------------------------------


def _message(err: Any, loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc)
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"unknown field {loc[-1]!r}{hint}"
    if kind == "union_tag_invalid":
        return f"unknown type {ctx.get('tag')!r}; expected one of: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "missing field 'type'"
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message.replace("Input should be", "expected").replace("input should be", "expected")
    value = err.get("input")
    if kind != "value_error" and isinstance(value, str | int | float) and len(repr(value)) <= 40:
        message += f", got {value!r}"
    return message


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """The fields of the model holding `loc`'s last element (empty when it cannot be told)."""
    current: Any = Scenario
    for element in loc[:-1]:
        current = _step(current, element)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [_unwrap(m) for m in typing.get_args(tp) if m is not type(None)]
    return [tp]


def _step(tp: Any, element: Any) -> Any:
    """The type one loc element further down (a field, an item, a union member named by its tag)."""
    members = _union_members(tp)
    if isinstance(element, str):
        for member in members:  # a discriminated union: the element is the member's `type` tag
            if isinstance(member, type) and issubclass(member, BaseModel) and "type" in member.model_fields:
                tag_type = member.model_fields["type"].annotation
                if element in typing.get_args(tag_type):
                    return member
    for member in members:
        origin = typing.get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(element, str):
            field = member.model_fields.get(element)
            if field is not None:
                return field.annotation
        elif origin in (list, tuple) and isinstance(element, int):
            return typing.get_args(member)[0]
        elif origin is dict and isinstance(element, str):
            return typing.get_args(member)[1]
    return None
