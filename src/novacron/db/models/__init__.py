"""All tables, one module per area; importing this package registers them."""

from novacron.db.models.compute import VM, Flavor, Host, Image
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
    "AuditRecord",
    "Event",
    "Flavor",
    "Host",
    "IdempotencyRecord",
    "Image",
    "Project",
    "RefreshToken",
    "RevokedToken",
    "SigningKey",
    "Task",
    "Tenant",
    "User",
]
