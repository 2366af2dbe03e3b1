"""All tables, one module per area; importing this package registers them."""

from novacron.db.models.agents import CertificateAuthority, HostOperation, JoinToken, NodeCredential
from novacron.db.models.compute import (
    VM,
    Aggregate,
    AggregateHost,
    Allocation,
    Flavor,
    Host,
    Image,
    ServerGroup,
)
from novacron.db.models.identity import (
    Project,
    RefreshToken,
    RevokedToken,
    SigningKey,
    Tenant,
    User,
)
from novacron.db.models.network import (
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    PortSecurityGroup,
    QosPolicy,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)
from novacron.db.models.ops import AuditRecord, Event, IdempotencyRecord, Task

__all__ = [
    "VM",
    "Aggregate",
    "AggregateHost",
    "Allocation",
    "AuditRecord",
    "CertificateAuthority",
    "Event",
    "Flavor",
    "FloatingIP",
    "Host",
    "HostOperation",
    "IPAllocation",
    "IdempotencyRecord",
    "Image",
    "JoinToken",
    "Network",
    "NodeCredential",
    "Port",
    "PortSecurityGroup",
    "Project",
    "QosPolicy",
    "RefreshToken",
    "RevokedToken",
    "Router",
    "SecurityGroup",
    "SecurityGroupRule",
    "ServerGroup",
    "SigningKey",
    "Subnet",
    "Task",
    "Tenant",
    "User",
]
