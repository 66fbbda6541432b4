"""Kubernetes JSONPath, as CRD ``additionalPrinterColumns`` use it.

Supports the subset of client-go's ``util/jsonpath`` that printer columns
(and ``kubectl get -o jsonpath`` style paths) need: ``.field``,
``['quoted.key']``, escaped dots (``.metadata.labels.app\\.kubernetes\\.io/name``),
``[n]`` with negative indices, ``[a:b]`` slices, ``[*]`` and ``.*``,
recursive descent ``..field``, and filters ``[?(@.type=="Ready")]`` with
``== != < > <= >=`` or bare existence ``[?(@.x)]``. ``evaluate`` returns
every match; ``format_cell`` turns the first into a Table cell as
kube-apiserver's CRD table converter does. Called by ``api.printers``
and ``api.crd``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from kubevisor.api.errors import JSONPathError

Step = Callable[[Any], Iterator[Any]]



@dataclass(frozen=True, slots=True)
class _Filter:
    path: tuple[Step, ...]
    op: str | None
    literal: Any


_FILTER = re.compile(r"^\s*@((?:\.[^=!<>\s]+|\[[^\]]*\])*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*$")


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError as exc:
        raise JSONPathError(f"unrecognized literal {text!r}") from exc


def _field(name: str) -> Step:
    def step(value: Any) -> Iterator[Any]:
        if isinstance(value, dict) and name in value:
            yield value[name]

    return step


def _wildcard(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield from value.values()
    elif isinstance(value, list):
        yield from value


def _recursive(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for sub in value.values():
            yield from _recursive(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from _recursive(sub)


def _index(text: str) -> Step:
    if ":" in text:
        parts = [p.strip() for p in text.split(":")]
        bounds = [int(p) if p else None for p in parts[:3]]
        sl = slice(*bounds)

        def slice_step(value: Any) -> Iterator[Any]:
            if isinstance(value, list):
                yield from value[sl]

        return slice_step
    i = int(text)

    def index_step(value: Any) -> Iterator[Any]:
        if isinstance(value, list) and -len(value) <= i < len(value):
            yield value[i]

    return index_step


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    try:
        if op == "<":
            return bool(left < right)
        if op == ">":
            return bool(left > right)
        if op == "<=":
            return bool(left <= right)
        return bool(left >= right)
    except TypeError:
        return False


def _filter(text: str) -> Step:
    m = _FILTER.match(text)
    if m is None:
        raise JSONPathError(f"unsupported filter {text!r}")
    sub = tuple(_parse(m.group(1))) if m.group(1) else ()
    flt = _Filter(sub, m.group(2), _literal(m.group(3)) if m.group(2) else None)

    def step(value: Any) -> Iterator[Any]:
        items = value if isinstance(value, list) else \
            list(value.values()) if isinstance(value, dict) else []
        for item in items:
            found = _run(flt.path, item)
            if flt.op is None:
                if found:
                    yield item
            elif any(_compare(f, flt.op, flt.literal) for f in found):
                yield item

    return step


def _read_name(path: str, i: int) -> tuple[str, int]:
    out = []
    while i < len(path) and path[i] not in ".[":
        if path[i] == "\\" and i + 1 < len(path):
            out.append(path[i + 1])
            i += 2
            continue
        out.append(path[i])
        i += 1
    return "".join(out), i


def _parse(path: str) -> list[Step]:
    steps: list[Step] = []
    i, n = 0, len(path)
    while i < n:
        ch = path[i]
        if ch == ".":
            if path.startswith("..", i):
                steps.append(_recursive)
                i += 2
                if i < n and path[i] == "[":
                    continue
            else:
                i += 1
            if i < n and path[i] == "*":
                steps.append(_wildcard)
                i += 1
                continue
            name, i = _read_name(path, i)
            if name:
                steps.append(_field(name))
        elif ch == "[":
            depth, j = 0, i
            quote = ""
            while j < n:
                c = path[j]
                if quote:
                    if c == quote:
                        quote = ""
                elif c in "'\"":
                    quote = c
                elif c == "[":
                    depth += 1
                elif c == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= n:
                raise JSONPathError(f"unclosed [ in {path!r}")
            inner = path[i + 1:j].strip()
            i = j + 1
            if inner == "*":
                steps.append(_wildcard)
            elif inner.startswith("?(") and inner.endswith(")"):
                steps.append(_filter(inner[2:-1]))
            elif inner[:1] in "'\"":
                for key in re.findall(r"'([^']*)'|\"([^\"]*)\"", inner):
                    steps.append(_field(key[0] or key[1]))
            else:
                try:
                    steps.append(_index(inner))
                except ValueError as exc:
                    raise JSONPathError(f"bad index [{inner}] in {path!r}") from exc
        elif ch in " \t":
            i += 1
        else:
            name, i = _read_name(path, i)
            steps.append(_field(name))
    return steps


@functools.lru_cache(maxsize=1024)
def compile_path(path: str) -> tuple[Step, ...]:
    """Parse once: ``.spec.replicas`` or ``{.spec.replicas}``."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    return tuple(_parse(text))


def _run(steps: tuple[Step, ...], obj: Any) -> list[Any]:
    current = [obj]
    for step in steps:
        current = [out for value in current for out in step(value)]
        if not current:
            break
    return current


def evaluate(obj: Any, path: str) -> list[Any]:
    """Every value ``path`` selects in ``obj`` (empty if none)."""
    return _run(compile_path(path), obj)


def text(value: Any) -> str:
    """A value as jsonpath templates print it (strings raw, others JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def format_cell(column_type: str, values: list[Any], *, human_age: Callable[[str], str]) -> Any:
    """The Table cell kube-apiserver's CRD converter gives a column of this
    type (integer/number/string/boolean/date) for these matches: the first
    match, converted; None if there is none or it has the wrong type.
    ``human_age`` turns an RFC 3339 timestamp into an age such as ``5m``."""
    if not values:
        return None
    value = values[0]
    if value is None:
        return None
    if column_type == "string":
        return text(value)
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        return int(value) if isinstance(value, float) else None
    if column_type == "number":
        if isinstance(value, bool):
            return None
        return float(value) if isinstance(value, int | float) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        return human_age(value) if isinstance(value, str) else None
    return None
