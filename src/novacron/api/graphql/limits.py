"""Depth and cost limits, checked with the query's validation, before anything runs.

The cost of a query is what it may make the server produce: each object field counts once for every
row it may stand for (a scalar comes with its row). A top-level page counts ``first`` rows (its
maximum when ``first`` is a variable, which validation does not see), a nested relation
``RELATION_ROWS`` rows per parent. So
``vms(first: 50) { items { ports { securityGroups { name } } } }`` costs 50 + 50·10 + 50·10·10, and a
query that asks for too much is refused whole, with an error that says its cost, the limit and what
to lower. Introspection (``__schema``, ``__type``) is free and has no depth limit: clients and tools
must be able to read the schema.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
)

#: the deepest selection a query may nest (tenant → projects → VMs → ports → groups is 6 with the page)
MAX_DEPTH = 10
#: the most a query may cost (see the module's docstring)
MAX_COST = 100_000
#: what a nested list counts for per parent row
RELATION_ROWS = 10
#: a page's size when not given, and its maximum
DEFAULT_FIRST = 50
MAX_FIRST = 200


def _is_list(t: Any) -> bool:
    while isinstance(t, GraphQLNonNull):
        t = t.of_type
    return isinstance(t, GraphQLList)


def _rows(node: FieldNode) -> int:
    """How many rows a page (a field with ``first``) stands for."""
    for arg in node.arguments or ():
        if arg.name.value == "first":
            if isinstance(arg.value, IntValueNode):
                return max(1, min(int(arg.value.value), MAX_FIRST))
            return MAX_FIRST
    return DEFAULT_FIRST


class LimitsRule(ValidationRule):
    """Refuse an operation nested deeper than ``MAX_DEPTH`` or costing more than ``MAX_COST``."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
        root = self.context.schema.get_root_type(node.operation)
        if root is None:
            return
        self.deepest = 0
        self.memo: dict[tuple[str, str, int, int], tuple[int, int]] = {}
        cost = self._cost(node.selection_set, root, 1, 1, set())
        name = node.name.value if node.name else "the operation"
        if self.deepest > MAX_DEPTH:
            self.report_error(
                GraphQLError(
                    f"'{name}' is nested {self.deepest} levels deep; at most {MAX_DEPTH} are allowed: "
                    "query the deeper part separately (by id).",
                    node,
                    extensions={"code": "QUERY_TOO_DEEP", "depth": self.deepest, "limit": MAX_DEPTH},
                )
            )
        elif cost > MAX_COST:
            self.report_error(
                GraphQLError(
                    f"'{name}' may cost {cost}; at most {MAX_COST} is allowed: ask for smaller pages "
                    f"(first:) or fewer nested lists (each counts {RELATION_ROWS} rows per parent).",
                    node,
                    extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": MAX_COST},
                )
            )

    def _cost(
        self, selections: SelectionSetNode, parent: GraphQLObjectType, rows: int, depth: int, seen: set[str]
    ) -> int:
        cost = 0
        for sel in selections.selections:
            if isinstance(sel, FieldNode):
                cost += self._field_cost(sel, parent, rows, depth, seen)
            elif isinstance(sel, InlineFragmentNode):
                target = parent
                if sel.type_condition is not None:
                    named = self.context.schema.get_type(sel.type_condition.name.value)
                    target = named if isinstance(named, GraphQLObjectType) else parent
                cost += self._cost(sel.selection_set, target, rows, depth, seen)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                cost += self._spread(sel.name.value, parent, rows, depth, seen)
        return cost

    def _spread(self, name: str, parent: GraphQLObjectType, rows: int, depth: int, seen: set[str]) -> int:
        """A named fragment's cost, once per place: spread twice in each of a chain of fragments, it
        would otherwise be walked 2^n times (a denial of service by validation)."""
        key = (name, parent.name, rows, depth)
        if key not in self.memo:
            fragment = self.context.get_fragment(name)
            if fragment is None:  # an unknown one is another rule's error
                return 0
            named = self.context.schema.get_type(fragment.type_condition.name.value)
            target = named if isinstance(named, GraphQLObjectType) else parent
            outer, self.deepest = self.deepest, 0
            cost = self._cost(fragment.selection_set, target, rows, depth, seen | {name})
            self.memo[key] = (cost, self.deepest)
            self.deepest = outer
        cost, deepest = self.memo[key]
        self.deepest = max(self.deepest, deepest)
        return cost

    def _field_cost(
        self, sel: FieldNode, parent: GraphQLObjectType, rows: int, depth: int, seen: set[str]
    ) -> int:
        if sel.name.value.startswith("__"):
            return 0  # introspection
        self.deepest = max(self.deepest, depth)
        field = parent.fields.get(sel.name.value)
        named = get_named_type(field.type) if field is not None else None
        if field is None or sel.selection_set is None or not isinstance(named, GraphQLObjectType):
            return 0  # a scalar comes with its row
        if "first" in field.args:
            inner = rows * _rows(sel)
        elif _is_list(field.type) and not parent.name.endswith("Page"):  # a page's items: counted
            inner = rows * RELATION_ROWS
        else:
            inner = rows
        return inner + self._cost(sel.selection_set, named, inner, depth + 1, seen)
