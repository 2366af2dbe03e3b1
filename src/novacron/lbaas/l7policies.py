"""L7 policies of a listener, each with its rules, as resources of their own.

They are kept whole in the listener's ``l7policies`` column (read and written together, as
HAProxy's frontend takes them); each change is checked against the whole load balancer and
realised by its ``loadbalancer.apply`` task like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from novacron.db.models import LbListener, LoadBalancer
from novacron.errors import InvalidInput, NotFound
from novacron.lbaas import changes
from novacron.lbaas.listeners import with_ids
from novacron.service import Service

#: the fields a policy always has (the others may be null)
REQUIRED = frozenset({"action", "position", "rules", "redirect_http_code"})
CHANGEABLE = frozenset(
    {"action", "position", "rules", "redirect_pool_id", "redirect_url", "redirect_http_code"}
)


class L7PolicyService(Service):
    """Create, read, change and delete the L7 policies of the caller's listeners."""

    def listener(self, lb_ref: str, listener_ref: str) -> tuple[LoadBalancer, LbListener]:
        """The load balancer (as the caller sees it) and its listener."""
        lb = changes.find(self.session, self.principal, lb_ref)
        return lb, changes.child(self.session, LbListener, lb, listener_ref, "listener")

    def list(self, listener: LbListener) -> list[dict[str, Any]]:
        """The listener's policies, in the order they are tried."""
        return sorted(listener.l7policies or [], key=lambda p: (p.get("position", 1), p["id"]))

    def get(self, listener: LbListener, policy_id: str) -> dict[str, Any]:
        """The listener's policy of this id."""
        for policy in listener.l7policies or []:
            if policy["id"] == policy_id:
                return dict(policy)
        raise NotFound(
            "L7 policy", policy_id, detail=f"Listener {listener.id} has no L7 policy '{policy_id}'."
        )

    def create(self, lb: LoadBalancer, listener: LbListener, policy: Mapping[str, Any]) -> dict[str, Any]:
        """A new policy (with its rules) on the listener."""
        changes.check_not_pending(lb)
        made = with_ids([dict(policy)])[0]
        listener.l7policies = [*(listener.l7policies or []), made]
        changes.submit(
            self.session, self._ctx, lb, "l7policy.created", listener_id=listener.id, l7policy_id=made["id"]
        )
        return made

    def update(
        self, lb: LoadBalancer, listener: LbListener, policy_id: str, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Change the fields sent (``rules`` replaces the rules whole)."""
        changes.check_not_pending(lb)
        current = self.get(listener, policy_id)
        for key in set(values) - CHANGEABLE:
            raise InvalidInput(key, "cannot be changed")
        for key in REQUIRED & {k for k, v in values.items() if v is None}:
            raise InvalidInput(key, "cannot be null")
        changed = with_ids([{**current, **values}])[0]
        listener.l7policies = [changed if p["id"] == policy_id else p for p in listener.l7policies]
        changes.submit(
            self.session, self._ctx, lb, "l7policy.updated", listener_id=listener.id, l7policy_id=policy_id
        )
        return changed

    def delete(self, lb: LoadBalancer, listener: LbListener, policy_id: str) -> None:
        """Remove the policy from the listener."""
        changes.check_not_pending(lb)
        self.get(listener, policy_id)
        listener.l7policies = [p for p in listener.l7policies if p["id"] != policy_id]
        changes.submit(
            self.session, self._ctx, lb, "l7policy.deleted", listener_id=listener.id, l7policy_id=policy_id
        )
