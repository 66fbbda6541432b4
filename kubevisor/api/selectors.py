"""Label and field selectors: parsing and matching, pure.

The grammar is Kubernetes' own (``k8s.io/apimachinery/pkg/labels`` and
``.../fields``): label requirements ``k``, ``!k``, ``k=v``, ``k==v``,
``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k>1``, ``k<1`` joined by
commas; field requirements ``f=v``, ``f==v``, ``f!=v`` with ``\\`` escapes.
Callers: the apiserver (list, watch, deletecollection) and controllers
(a workload's ``spec.selector`` via :func:`label_selector_from_spec`).
Malformed input raises :class:`SelectorError` (a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubevisor.api.meta import label_value_errors, qualified_name_errors


class SelectorError(ValueError):
    """A selector string or LabelSelector object that does not parse."""


# --- labels ---------------------------------------------------------------

_OPS = ("in", "notin", "=", "==", "!=", "exists", "!", "gt", "lt")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # one of _OPS ("=" and "==" are kept as "=")
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op == "=" or op == "in":
            return labels.get(self.key) in self.values
        if op == "!=" or op == "notin":
            return labels.get(self.key) not in self.values
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        value = labels.get(self.key)
        if value is None:
            return False
        try:
            have, want = int(value), int(self.values[0])
        except ValueError:
            return False
        return have > want if op == "gt" else have < want

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        sym = {"gt": ">", "lt": "<"}.get(self.op, self.op)
        return f"{self.key}{sym}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False  # a nil LabelSelector in a spec matches nothing

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _check_key(key: str) -> None:
    errs = qualified_name_errors(key)
    if errs:
        raise SelectorError(
            f"unable to parse requirement: key: Invalid value: {key!r}: {'; '.join(errs)}"
            .replace("'", '"', 2)
        )


def _check_value(value: str) -> None:
    errs = label_value_errors(value)
    if errs:
        raise SelectorError(
            f'unable to parse requirement: values[0]: Invalid value: "{value}": {"; ".join(errs)}'
        )


class _Lexer:
    """Splits a label selector into tokens: identifiers, operators, ``(``, ``)``, ``,``."""

    _SPECIAL = "=!(),<> \t\n"

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def next(self) -> tuple[str, str]:
        text, n = self.text, len(self.text)
        while self.pos < n and text[self.pos] in " \t\n":
            self.pos += 1
        if self.pos >= n:
            return ("end", "")
        ch = text[self.pos]
        two = text[self.pos : self.pos + 2]
        if two in ("==", "!="):
            self.pos += 2
            return ("op", two)
        if ch in "=!<>(),":
            self.pos += 1
            kind = {"(": "open", ")": "close", ",": "comma"}.get(ch, "op")
            return (kind, ch)
        start = self.pos
        while self.pos < n and text[self.pos] not in self._SPECIAL:
            self.pos += 1
        word = text[start : self.pos]
        if word in ("in", "notin"):
            return ("op", word)
        return ("ident", word)

    def peek(self) -> tuple[str, str]:
        pos = self.pos
        tok = self.next()
        self.pos = pos
        return tok


def parse_label_selector(text: str) -> LabelSelector:
    """Parse ``labelSelector`` query text; the empty string selects everything."""
    lex = _Lexer(text)
    reqs: list[Requirement] = []
    if lex.peek()[0] == "end":
        return LabelSelector()
    while True:
        reqs.append(_parse_requirement(lex))
        kind, val = lex.next()
        if kind == "end":
            break
        if kind != "comma":
            raise SelectorError(f"found '{val}', expected: ',' or 'end'")
    reqs.sort(key=lambda r: r.key)
    return LabelSelector(tuple(reqs))


def _parse_requirement(lex: _Lexer) -> Requirement:
    kind, val = lex.next()
    negate = False
    if kind == "op" and val == "!":
        negate = True
        kind, val = lex.next()
    if kind != "ident":
        raise SelectorError(f"found '{val}', expected: !, identifier, or 'end'")
    key = val
    _check_key(key)
    if negate:
        return Requirement(key, "!")
    kind, op = lex.peek()
    if kind in ("end", "comma"):
        return Requirement(key, "exists")
    lex.next()
    if kind != "op":
        raise SelectorError(
            f"found '{op}', expected: in, notin, =, ==, !=, gt, lt"
        )
    if op in ("in", "notin"):
        if lex.next()[0] != "open":
            raise SelectorError("found '" + op + "', expected: '('")
        values: list[str] = []
        while True:
            kind, val = lex.next()
            if kind == "close" and not values:
                break
            if kind == "ident":
                _check_value(val)
                values.append(val)
                kind, val = lex.next()
            elif kind == "comma":
                values.append("")
                continue
            if kind == "close":
                break
            if kind != "comma":
                raise SelectorError(f"found '{val}', expected: ',', ')' or identifier")
        return Requirement(key, op, tuple(sorted(set(values))))
    if op == "!" :
        raise SelectorError("found '!', expected: in, notin, =, ==, !=, gt, lt")
    kind, val = lex.peek()
    if kind == "ident":
        lex.next()
    elif kind in ("end", "comma"):
        val = ""
    else:
        raise SelectorError(f"found '{val}', expected: identifier")
    if op in ("<", ">"):
        try:
            int(val)
        except ValueError:
            raise SelectorError(
                f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {val!r}"
            ) from None
        return Requirement(key, "gt" if op == ">" else "lt", (val,))
    _check_value(val)
    return Requirement(key, "=" if op in ("=", "==") else "!=", (val,))


def label_selector_from_spec(spec: Mapping[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector object (``matchLabels``/``matchExpressions``) as a
    selector. ``None`` matches nothing; ``{}`` matches everything (as in
    ``metav1.LabelSelectorAsSelector``)."""
    if spec is None:
        return LabelSelector(nothing=True)
    reqs: list[Requirement] = []
    for key, value in (spec.get("matchLabels") or {}).items():
        _check_key(key)
        _check_value(str(value))
        reqs.append(Requirement(key, "=", (str(value),)))
    for expr in spec.get("matchExpressions") or ():
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = tuple(str(v) for v in expr.get("values") or ())
        _check_key(key)
        if op == "In":
            reqs.append(Requirement(key, "in", tuple(sorted(set(values)))))
        elif op == "NotIn":
            reqs.append(Requirement(key, "notin", tuple(sorted(set(values)))))
        elif op == "Exists":
            reqs.append(Requirement(key, "exists"))
        elif op == "DoesNotExist":
            reqs.append(Requirement(key, "!"))
        else:
            raise SelectorError(f'"{op}" is not a valid label selector operator')
    reqs.sort(key=lambda r: r.key)
    return LabelSelector(tuple(reqs))


# --- fields ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def fields(self) -> set[str]:
        return {r.field for r in self.requirements}

    def matches(self, values: Mapping[str, str]) -> bool:
        for r in self.requirements:
            have = values.get(r.field, "")
            if (have == r.value) != (r.op == "="):
                return False
        return True

    def value_of(self, field: str) -> str | None:
        """The value an ``=`` requirement pins ``field`` to, if any."""
        for r in self.requirements:
            if r.field == field and r.op == "=":
                return r.value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "\\,=!":
                raise SelectorError(f"invalid field selector: invalid escape sequence: {text!r}")
            out.append(text[i + 1])
            i += 2
            continue
        if ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped {ch!r}: {text!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def parse_field_selector(text: str) -> FieldSelector:
    """Parse ``fieldSelector`` query text; the empty string selects everything."""
    if not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(text, ","):
        if not term:
            continue
        for sym, op in (("!=", "!="), ("==", "="), ("=", "=")):
            idx = _find_unescaped(term, sym)
            if idx >= 0:
                field = term[:idx].strip()
                value = _unescape(term[idx + len(sym) :])
                reqs.append(FieldRequirement(field, op, value))
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
    return FieldSelector(tuple(reqs))


def _find_unescaped(text: str, sym: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(sym, i):
            return i
        i += 1
    return -1


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of the field at dotted ``path`` (``spec.nodeName``) as a
    field selector compares it: missing → ``""``, booleans lower case."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, (dict, list)):
        return ""
    return str(cur)
