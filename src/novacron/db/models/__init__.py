"""All tables, one module per area; importing this package registers them."""

from novacron.db.models.agents import CertificateAuthority, HostOperation, JoinToken, NodeCredential
from novacron.db.models.backups import BackupPolicy, BackupSnapshot, BackupTarget, DRRunbook, RestoreJob
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
from novacron.db.models.ops import AuditRecord, Event, IdempotencyRecord, Task

__all__ = [
    "VM",
    "Aggregate",
    "AggregateHost",
    "Allocation",
    "AuditRecord",
    "BackupPolicy",
    "BackupSnapshot",
    "BackupTarget",
    "DRRunbook",
    "CertificateAuthority",
    "Event",
    "Flavor",
    "Host",
    "HostOperation",
    "IdempotencyRecord",
    "Image",
    "JoinToken",
    "NodeCredential",
    "Project",
    "RefreshToken",
    "RestoreJob",
    "RevokedToken",
    "ServerGroup",
    "SigningKey",
    "Task",
    "Tenant",
    "User",
]
