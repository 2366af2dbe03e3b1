"""Hierarchical quotas, capacity reservations, budgets, metering and the policy engine.

The interface other areas use (everything else is internal):

- ``registry.register_resource(name, unit)`` / ``registry.register_counter(kind, fn)``: a new
  resource kind that can be limited, reconciled and metered;
- ``enforce.charge(session, principal, project, kind, id, amounts)`` in the transaction that
  writes the resource row (a refusal raises ``errors.Forbidden``, titled "Refused by policy"),
  ``enforce.release(session, kind, id)`` when it goes;
- ``reservations.claim_through`` / ``give_back`` for placement.

The API's services: ``service.QuotaService`` (nodes, limits, templates), ``rules.PolicyRuleService``,
``bookings.ReservationService``, ``usage.UsageService`` and ``usage.BudgetService``.
"""
