"""The catalogue: each automated check, and the controls of SOC 2, ISO/IEC 27001:2022 (Annex A),
GDPR, HIPAA (Security Rule) and PCI-DSS v4.0 it gives evidence for.

The mapping is this platform's reading of the controls, limited to what its own configuration and
state can show: a control passes here when every check mapped to it passes. Policies, training and
the rest of a control's procedures stay with the organisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from novacron.compliance import checks, checks_data
from novacron.compliance.checks import CheckFn

FRAMEWORKS = ("SOC 2", "ISO 27001", "GDPR", "HIPAA", "PCI-DSS")


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    run: CheckFn


@dataclass(frozen=True)
class Control:
    framework: str
    id: str
    title: str
    checks: tuple[str, ...]


CHECKS: tuple[Check, ...] = (
    Check("tls_listeners", "TLS on every listener", checks.tls_listeners),
    Check("mfa_admins", "MFA enforced for administrators", checks.mfa_admins),
    Check("password_policy", "Password policy and hashing", checks.password_policy),
    Check("secrets_sealed", "Secrets encrypted at rest", checks_data.secrets_sealed),
    Check("backup_encryption", "Backups encrypted", checks_data.backup_encryption),
    Check("backups_taken", "Backups taken within their policy", checks_data.backups_taken),
    Check("restore_tested", "Restores tested (test restores, DR drills)", checks_data.restore_tested),
    Check("retention_holds", "Retention and legal holds", checks_data.retention_holds),
    Check("audit_chain", "Audit log chain intact", checks_data.audit_chain),
    Check("keys_rotated", "Keys rotated within their age", checks_data.keys_rotated),
    Check("dormant_accounts", "No dormant accounts", checks.dormant_accounts),
    Check("public_images", "No public images", checks.public_images),
    Check("open_security_groups", "No admin port open to the internet", checks.open_security_groups),
)
BY_ID = {c.id: c for c in CHECKS}


def _c(framework: str, id_: str, title: str, *check_ids: str) -> Control:
    unknown = [c for c in check_ids if c not in BY_ID]
    assert not unknown, unknown
    return Control(framework, id_, title, check_ids)


CONTROLS: tuple[Control, ...] = (
    _c("SOC 2", "CC6.1", "Logical access security", "mfa_admins", "password_policy", "secrets_sealed"),
    _c("SOC 2", "CC6.2", "User registration and removal", "dormant_accounts"),
    _c(
        "SOC 2",
        "CC6.6",
        "Boundary protection against external threats",
        "open_security_groups",
        "public_images",
    ),
    _c("SOC 2", "CC6.7", "Protection of data in transmission", "tls_listeners"),
    _c("SOC 2", "CC7.2", "Monitoring of system components (audit)", "audit_chain"),
    _c("SOC 2", "A1.2", "Backup and recovery", "backups_taken", "backup_encryption", "restore_tested"),
    _c("SOC 2", "C1.2", "Disposal of confidential information", "retention_holds"),
    _c("ISO 27001", "A.5.17", "Authentication information", "password_policy"),
    _c("ISO 27001", "A.5.18", "Access rights", "dormant_accounts"),
    _c("ISO 27001", "A.5.33", "Protection of records", "retention_holds", "audit_chain"),
    _c("ISO 27001", "A.8.3", "Information access restriction", "public_images"),
    _c("ISO 27001", "A.8.5", "Secure authentication", "mfa_admins"),
    _c("ISO 27001", "A.8.13", "Information backup", "backups_taken", "restore_tested", "backup_encryption"),
    _c("ISO 27001", "A.8.15", "Logging", "audit_chain"),
    _c("ISO 27001", "A.8.20", "Networks security", "open_security_groups"),
    _c("ISO 27001", "A.8.24", "Use of cryptography", "tls_listeners", "secrets_sealed", "keys_rotated"),
    _c("GDPR", "Art. 5(1)(e)", "Storage limitation", "retention_holds", "dormant_accounts"),
    _c("GDPR", "Art. 5(2)", "Accountability", "audit_chain"),
    _c(
        "GDPR",
        "Art. 32(1)(a)",
        "Encryption of personal data",
        "tls_listeners",
        "secrets_sealed",
        "backup_encryption",
    ),
    _c(
        "GDPR",
        "Art. 32(1)(b)",
        "Confidentiality of processing systems",
        "mfa_admins",
        "open_security_groups",
        "public_images",
    ),
    _c("GDPR", "Art. 32(1)(c)", "Restore availability in time", "backups_taken", "restore_tested"),
    _c("HIPAA", "164.308(a)(7)(ii)(A)", "Data backup plan", "backups_taken"),
    _c("HIPAA", "164.308(a)(7)(ii)(D)", "Testing and revision procedures", "restore_tested"),
    _c(
        "HIPAA",
        "164.312(a)(1)",
        "Access control",
        "dormant_accounts",
        "public_images",
        "open_security_groups",
    ),
    _c(
        "HIPAA",
        "164.312(a)(2)(iv)",
        "Encryption and decryption",
        "secrets_sealed",
        "backup_encryption",
        "keys_rotated",
    ),
    _c("HIPAA", "164.312(b)", "Audit controls", "audit_chain"),
    _c("HIPAA", "164.312(d)", "Person or entity authentication", "mfa_admins", "password_policy"),
    _c("HIPAA", "164.312(e)(1)", "Transmission security", "tls_listeners"),
    _c("HIPAA", "164.316(b)(2)(i)", "Retention of documentation", "retention_holds"),
    _c("PCI-DSS", "1.3.1", "Inbound traffic to the CDE restricted", "open_security_groups"),
    _c("PCI-DSS", "3.5.1", "Stored account data rendered unreadable", "secrets_sealed", "backup_encryption"),
    _c("PCI-DSS", "3.7.4", "Cryptographic keys changed at the end of their cryptoperiod", "keys_rotated"),
    _c("PCI-DSS", "4.2.1", "Strong cryptography in transmission", "tls_listeners"),
    _c("PCI-DSS", "7.2.1", "Access control model", "public_images"),
    _c("PCI-DSS", "8.2.6", "Inactive accounts removed or disabled within 90 days", "dormant_accounts"),
    _c("PCI-DSS", "8.3.6", "Password length and complexity", "password_policy"),
    _c("PCI-DSS", "8.4.1", "MFA for administrative access", "mfa_admins"),
    _c("PCI-DSS", "10.3.2", "Audit logs protected from modification", "audit_chain"),
    _c(
        "PCI-DSS",
        "12.10.1",
        "Incident response: backups and recovery tested",
        "backups_taken",
        "restore_tested",
    ),
)


def controls_of(check_id: str) -> list[Control]:
    return [c for c in CONTROLS if check_id in c.checks]
