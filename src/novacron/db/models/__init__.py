"""All tables, one module per area; importing this package registers them."""

from novacron.db.models.agents import CertificateAuthority, HostOperation, JoinToken, NodeCredential
from novacron.db.models.audit_chain import AuditChainHead, AuditCheckpoint
from novacron.db.models.autoscaling import (
    ScalingActivity,
    ScalingGroup,
    ScalingGroupMember,
    ScalingLifecycleHook,
    ScalingPolicy,
)
from novacron.db.models.backups import BackupPolicy, BackupSnapshot, BackupTarget, DRRunbook, RestoreJob
from novacron.db.models.compliance import ComplianceResult, ComplianceRun
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
from novacron.db.models.dashboards import Dashboard
from novacron.db.models.gslb import GslbName, GslbRegion
from novacron.db.models.guestinfo import VMGuestInfo
from novacron.db.models.identity import (
    AccessTicket,
    ApiKey,
    CustomRole,
    LoginFailure,
    Project,
    RefreshToken,
    RevokedToken,
    RoleAssignment,
    SecurityBlock,
    SigningKey,
    Tenant,
    User,
)
from novacron.db.models.kms import KmsKey, KmsKeyVersion, TenantSecret, VmSecret
from novacron.db.models.lbaas import LbAmphora, LbListener, LbMember, LbPool, LoadBalancer
from novacron.db.models.lbcerts import AcmeAccount, LbCertificate
from novacron.db.models.liveconfig import ConfigVersion
from novacron.db.models.mfa import MfaChallenge, MfaRecoveryCode, MfaTotp, TenantMfaPolicy
from novacron.db.models.monitoring import Alert, AlertingPeer, AlertReceiver, AlertRule
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
from novacron.db.models.passkeys import MfaPasskey, MfaPasskeyChallenge
from novacron.db.models.quota import (
    Budget,
    CapacityReservation,
    LedgerEntry,
    MeterState,
    PolicyRule,
    Price,
    QuotaCharge,
    QuotaLimit,
    QuotaNode,
    QuotaTemplate,
    QuotaUsage,
)
from novacron.db.models.slo import SLO, Probe, ProbeResult
from novacron.db.models.sso import IdentityProvider, SsoLink, SsoLogin
from novacron.db.models.traces import TraceSpan
from novacron.db.models.vm_snapshots import VmSnapshot
from novacron.db.models.volumes import Volume, VolumeSnapshot
from novacron.db.models.webhooks import WebhookDelivery, WebhookSubscription

__all__ = [
    "ComplianceResult",
    "ComplianceRun",
    "IdentityProvider",
    "SsoLink",
    "SsoLogin",
    "AuditChainHead",
    "AuditCheckpoint",
    "ApiKey",
    "CustomRole",
    "RoleAssignment",
    "VMGuestInfo",
    "Volume",
    "VolumeSnapshot",
    "VmSnapshot",
    "ScalingActivity",
    "ScalingGroup",
    "ScalingGroupMember",
    "ScalingLifecycleHook",
    "ScalingPolicy",
    "AcmeAccount",
    "LbCertificate",
    "Dashboard",
    "GslbName",
    "GslbRegion",
    "Alert",
    "AlertReceiver",
    "AlertRule",
    "AlertingPeer",
    "SLO",
    "Probe",
    "ProbeResult",
    "LoginFailure",
    "SecurityBlock",
    "VM",
    "Aggregate",
    "AggregateHost",
    "Allocation",
    "AuditRecord",
    "BackupPolicy",
    "BackupSnapshot",
    "BackupTarget",
    "DRRunbook",
    "Budget",
    "CapacityReservation",
    "CertificateAuthority",
    "ConfigVersion",
    "Event",
    "Flavor",
    "FloatingIP",
    "Host",
    "HostOperation",
    "IPAllocation",
    "IdempotencyRecord",
    "Image",
    "JoinToken",
    "LbAmphora",
    "LbListener",
    "LbMember",
    "LbPool",
    "LoadBalancer",
    "LedgerEntry",
    "MeterState",
    "Network",
    "NodeCredential",
    "PolicyRule",
    "Port",
    "PortSecurityGroup",
    "Price",
    "Project",
    "QosPolicy",
    "QuotaCharge",
    "QuotaLimit",
    "QuotaNode",
    "QuotaTemplate",
    "QuotaUsage",
    "RefreshToken",
    "RestoreJob",
    "AccessTicket",
    "RevokedToken",
    "Router",
    "SecurityGroup",
    "SecurityGroupRule",
    "ServerGroup",
    "SigningKey",
    "Subnet",
    "Task",
    "MfaChallenge",
    "MfaRecoveryCode",
    "MfaTotp",
    "MfaPasskey",
    "MfaPasskeyChallenge",
    "TenantMfaPolicy",
    "TraceSpan",
    "Tenant",
    "KmsKey",
    "KmsKeyVersion",
    "TenantSecret",
    "VmSecret",
    "User",
    "WebhookDelivery",
    "WebhookSubscription",
]
