"""Hierarchical quotas, capacity reservations, budgets, metering and the policy engine.

The interface other areas use (everything else is internal):

- ``registry.register_resource(name, unit)`` / ``registry.register_counter(kind, fn)``: a new
  resource kind that can be limited, reconciled and metered;
- ``enforce.charge(session, principal, project, kind, id, amounts)`` in the transaction that
  writes the resource row (raises the policy's 403 problem), ``enforce.release(session, kind, id)``
  when it goes;
- ``reservations.claim_through`` / ``give_back`` for placement.
"""
