"""The replicas' Alertmanagers as one cluster: Alertmanager's own high availability, by gossip.

Every replica evaluates the same rules (its vmalert over the shared metrics store) and hands its
alerts to its own Alertmanager. Clustered, the Alertmanagers share their notification log and
their silences: a notification goes out once however many replicas run, and a silence made
through any replica holds on all of them. Peers find each other through the database
(``alerting_peers``): each replica registers its gossip address while it runs and starts with the
addresses seen within ``PEER_TTL`` (memberlist tells the others about a newcomer). The gossip is
mutual TLS under the platform CA (each replica's server certificate), so only replicas join.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from novacron.db.base import utcnow
from novacron.db.models import AlertingPeer

if TYPE_CHECKING:
    from novacron.db.base import Database
    from novacron.identity.pki import ServerTLS

#: a peer not refreshed for this long is not offered to a starting replica
PEER_TTL = timedelta(minutes=2)
#: how often a running replica refreshes its row
REFRESH_S = 30.0


@dataclass(frozen=True)
class ClusterSpec:
    """This replica's place in the cluster: its gossip ``address`` (host:port, reachable by the
    other replicas and named in its certificate), its name, and its TLS files."""

    address: str
    replica: str
    tls: ServerTLS


def live_peers(db: Database, own: str) -> list[str]:
    """The gossip addresses of the other replicas seen lately."""
    since = utcnow() - PEER_TTL
    with db.read_session() as s:
        stmt = select(AlertingPeer.address).where(AlertingPeer.seen_at >= since, AlertingPeer.address != own)
        return sorted(s.scalars(stmt))


def register(db: Database, spec: ClusterSpec) -> None:
    """Say (again) that this replica's Alertmanager gossips at ``spec.address``."""
    with db.session() as s:
        row = s.get(AlertingPeer, spec.address)
        if row is None:
            s.add(AlertingPeer(address=spec.address, replica=spec.replica, seen_at=utcnow()))
        else:
            row.replica, row.seen_at = spec.replica, utcnow()


def unregister(db: Database, address: str) -> None:
    """This replica's Alertmanager stops: starting replicas no longer try it."""
    with db.session() as s:
        s.execute(delete(AlertingPeer).where(AlertingPeer.address == address))


def tls_config(tls: ServerTLS) -> str:
    """Alertmanager's ``--cluster.tls-config`` file: gossip served and dialled with the replica's
    certificate, the other side's verified against the platform CA."""
    files = {"cert_file": str(tls.cert), "key_file": str(tls.key)}
    return json.dumps(  # YAML is a superset of JSON
        {
            "tls_server_config": {
                **files,
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": str(tls.ca_cert),
            },
            "tls_client_config": {**files, "ca_file": str(tls.ca_cert)},
        },
        indent=2,
    )


def alertmanager_flags(spec: ClusterSpec, peers: list[str], tls_config_path: Path) -> list[str]:
    """The cluster flags of this replica's Alertmanager."""
    return [
        f"--cluster.listen-address={spec.address}",
        f"--cluster.advertise-address={spec.address}",
        f"--cluster.tls-config={tls_config_path}",
        # a lone first replica need not wait the default minute before it notifies
        "--cluster.settle-timeout=10s",
        *(f"--cluster.peer={peer}" for peer in peers),
    ]
