"""Tenant scoping of a PromQL query by rewriting its selectors, for stores without label enforcement.

A PromQL query reads stored data only through its vector selectors (a range selector, a subquery and
every function read through one), so a query in which every vector selector also requires
``tenant_id="<tenant>"`` can only ever see that tenant's series, whatever else it says: a matcher is
only ever *added* (the selectors' own matchers stay and can only narrow the result further), and
operators, ``label_replace`` or ``absent`` only reshape what the selectors returned.

The query is parsed with ``promql-parser`` (the Prometheus grammar); each selector is rebuilt as text
with the tenant matcher appended and parsed again (the parser's objects cannot be edited in place), and
the result is walked once more to check that every selector carries the matcher, so that a rewrite
that went wrong fails closed. What cannot be enforced this way is refused: selector-level ``or``
matchers (Prometheus 3) and ``info()``, which reads series its argument does not name.
"""

from __future__ import annotations

import json
from datetime import timedelta

import promql_parser as pp

from novacron.errors import InvalidInput

TENANT_LABEL = "tenant_id"
#: functions that read series other than those of their selectors
_UNSCOPABLE_FUNCTIONS = frozenset({"info"})
#: the parser's operators are not hashable, so this is a list of pairs
_OPS = [(pp.MatchOp.Equal, "="), (pp.MatchOp.NotEqual, "!="), (pp.MatchOp.Re, "=~"), (pp.MatchOp.NotRe, "!~")]


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput("query", reason, part="query")


def parse(promql: str) -> pp.Expr:
    """The query's syntax tree; InvalidInput naming ``query`` with the parser's message."""
    try:
        return pp.parse(promql)
    except (ValueError, TypeError) as exc:
        raise _refuse(f"not a valid PromQL expression: {exc}") from exc


def _quoted(value: str) -> str:
    # JSON's escapes (\" \\ \n \uXXXX) are all valid in a PromQL double-quoted string
    return json.dumps(value, ensure_ascii=False)


def _duration(delta: timedelta) -> str:
    if delta < timedelta(0):
        return "-" + pp.display_duration(-delta)
    return str(pp.display_duration(delta))


def _op(op: pp.MatchOp) -> str:
    return next(text for known, text in _OPS if known == op)


def _modifiers(selector: pp.VectorSelector) -> str:
    text = ""
    at = selector.at
    if at is not None:
        if at.type == pp.AtModifierType.Start:
            text += " @ start()"
        elif at.type == pp.AtModifierType.End:
            text += " @ end()"
        elif at.at is not None:
            text += f" @ {at.at.timestamp():.3f}"
    if selector.offset is not None:
        text += f" offset {_duration(selector.offset)}"
    return text


def _scoped_selector(selector: pp.VectorSelector, tenant_id: str) -> pp.Expr:
    if selector.matchers.or_matchers:
        raise _refuse(
            "selectors with 'or' between matchers cannot be scoped to your tenant; use 'or' between selectors"
        )
    matchers = [f"{m.name}{_op(m.op)}{_quoted(m.value)}" for m in selector.matchers.matchers]
    matchers.append(f"{TENANT_LABEL}={_quoted(tenant_id)}")
    return pp.parse(f"{selector.name or ''}{{{','.join(matchers)}}}{_modifiers(selector)}")


def _is_scoped(selector: pp.VectorSelector, tenant_id: str) -> bool:
    return not selector.matchers.or_matchers and any(
        m.op == pp.MatchOp.Equal and m.name == TENANT_LABEL and m.value == tenant_id
        for m in selector.matchers.matchers
    )


def scope_to_tenant(promql: str, tenant_id: str) -> str:
    """``promql`` with ``tenant_id="<tenant_id>"`` required by every selector; InvalidInput naming
    ``query`` when it does not parse or reads data a selector matcher cannot restrict."""

    def rewrite(node: pp.Expr) -> pp.Expr | None:
        if isinstance(node, pp.Call) and node.func.name in _UNSCOPABLE_FUNCTIONS:
            raise _refuse(f"{node.func.name}() reads series outside your tenant and is not allowed")
        if isinstance(node, pp.VectorSelector):
            return _scoped_selector(node, tenant_id)
        return None

    scoped = pp.transform(parse(promql), post_visit=rewrite)
    unscoped: list[str] = []

    def check(node: pp.Expr) -> bool:
        if isinstance(node, pp.VectorSelector) and not _is_scoped(node, tenant_id):
            unscoped.append(str(node))
        return True

    pp.walk(scoped, pre_visit=check)
    if unscoped:  # never expected: the rewrite above missed a selector, so refuse rather than leak
        raise _refuse(f"the selector {unscoped[0]} could not be scoped to your tenant")
    return str(scoped.prettify())


def selector_matchers(match: str, tenant_id: str) -> str:
    """A series selector (``match[]`` of the series and labels APIs) restricted to the tenant;
    InvalidInput naming ``match[]`` unless it is a single selector."""
    expr = parse(match)
    if not isinstance(expr, pp.VectorSelector):
        raise InvalidInput("match[]", 'must be a series selector such as up{job="x"}', part="query")
    return scope_to_tenant(match, tenant_id)
