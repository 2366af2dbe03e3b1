"""Alertmanager's configuration, rendered from the receivers the API holds.

Alertmanager routes, groups, waits, repeats, silences and inhibits; it never talks to the outside
itself. Every receiver it knows is a webhook to the platform's notification listener (loopback,
``Authorization: Bearer`` with a secret generated at each start), named by the platform receiver
it stands for; the platform then does the delivery (signed webhook through the egress guard,
email, event stream). The first route sends every alert, ungrouped, to ``state``, which is how the
platform keeps the last state of each alert; ``continue`` lets the receivers' routes see it too.

A receiver's route matches the alerts of rules that name it (``novacron_receivers`` holds
``,id1,id2,``), of its own tenant and tenant scope (a tenant's receiver never gets a platform
rule's alert), and its own matchers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from novacron.monitoring.alerting.rules import RECEIVERS, SCOPE, TENANT

STATE_RECEIVER = "state"
#: the one fixed inhibition: a critical alert mutes the warnings of the same rule and VM
INHIBIT = [
    {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity=~"warning|info"'],
        "equal": ["alertname", TENANT, SCOPE, "vm_id"],
    }
]


@dataclass(frozen=True)
class RoutedReceiver:
    """What a route needs of a stored receiver."""

    id: str
    tenant_id: str | None
    group_by: Sequence[str]
    group_wait_s: int
    group_interval_s: int
    repeat_interval_s: int
    #: ``{"name", "op", "value"}`` with op one of = != =~ !~
    matchers: Sequence[dict[str, str]]


def matcher_text(name: str, op: str, value: str) -> str:
    """One Alertmanager matcher, ``name="value"`` (the value quoted and escaped)."""
    return f"{name}{op}{json.dumps(value)}"


def _route(receiver: RoutedReceiver) -> dict[str, Any]:
    scope = [matcher_text(RECEIVERS, "=~", f".*,{re.escape(receiver.id)},.*")]
    if receiver.tenant_id is not None:
        scope += [matcher_text(TENANT, "=", receiver.tenant_id), matcher_text(SCOPE, "=", "tenant")]
    else:
        scope.append(matcher_text(SCOPE, "=", "platform"))
    return {
        "receiver": receiver.id,
        "matchers": scope + [matcher_text(m["name"], m["op"], m["value"]) for m in receiver.matchers],
        "group_by": list(receiver.group_by) or ["alertname"],
        "group_wait": f"{receiver.group_wait_s}s",
        "group_interval": f"{max(1, receiver.group_interval_s)}s",
        "repeat_interval": f"{max(receiver.repeat_interval_s, receiver.group_interval_s, 1)}s",
        "continue": True,
    }


def _webhook(listener_url: str, name: str, bearer: str) -> dict[str, Any]:
    return {
        "name": name,
        "webhook_configs": [
            {
                "url": f"{listener_url}/notify/{name}",
                "send_resolved": True,
                "max_alerts": 0,
                "http_config": {"authorization": {"type": "Bearer", "credentials": bearer}},
            }
        ],
    }


def render_config(receivers: Iterable[RoutedReceiver], listener_url: str, bearer: str) -> str:
    """alertmanager.yml (JSON, which YAML reads), receivers in a fixed order."""
    ordered = sorted(receivers, key=lambda r: r.id)
    state_route = {
        "receiver": STATE_RECEIVER,
        "group_by": ["..."],
        "group_wait": "0s",
        "group_interval": "1s",
        "repeat_interval": "24h",
        "continue": True,
    }
    config = {
        "route": {
            "receiver": STATE_RECEIVER,
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "24h",
            "routes": [state_route, *(_route(r) for r in ordered)],
        },
        "receivers": [
            _webhook(listener_url, name, bearer) for name in (STATE_RECEIVER, *(r.id for r in ordered))
        ],
        "inhibit_rules": INHIBIT,
    }
    return json.dumps(config, indent=1, sort_keys=True)
