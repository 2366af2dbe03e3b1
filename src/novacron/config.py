"""Settings of one NovaCron process, read once from the environment.

Every path the platform writes lives under ``state_dir`` so that several
nodes (and test instances) can run side by side on one machine.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from novacron.netguard import IPNetwork


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address or a URL's host) is this machine only: the one test the
    server (plain HTTP only there) and the CLI (the local node's CA) share."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _env(name: str, default: str) -> str:
    return os.environ.get(f"NOVACRON_{name}", default)


def _event_bus(url: str) -> str:
    if url and not url.startswith(("nats://", "tls://")):
        raise ValueError(f"NOVACRON_EVENT_BUS={url!r}: expected nats://host:port (or empty)")
    return url


def _host_port(name: str, default: str) -> str:
    value = _env(name, default)
    host, _, port = value.rpartition(":")
    if value and (not host or not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"NOVACRON_{name} must be host:port, not {value!r}")
    return value


def _ratio(name: str, default: str) -> float:
    value = float(_env(name, default))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"NOVACRON_{name} must be between 0 and 1, not {value}")
    return value


def _networks(value: str) -> tuple[str, ...]:
    """NOVACRON_TRUSTED_PROXIES: comma-separated addresses or CIDRs, checked at start-up."""
    nets = []
    for item in (v.strip() for v in value.split(",")):
        if item:
            try:
                nets.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError as exc:
                raise ValueError(f"NOVACRON_TRUSTED_PROXIES: {item!r} is not an address or CIDR") from exc
    return tuple(nets)


def _proxy_header(value: str) -> str:
    if value.lower() not in ("x-forwarded-for", "forwarded"):
        raise ValueError(f"NOVACRON_PROXY_HEADER must be 'x-forwarded-for' or 'forwarded', not {value!r}")
    return value.lower()


def _keyring(value: str) -> Path | None:
    """NOVACRON_RBD_KEYRING: a readable keyring file that only its owner reads (it holds a key)."""
    if not value:
        return None
    path = Path(value).resolve()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ValueError(f"NOVACRON_RBD_KEYRING: cannot read {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ValueError(
            f"NOVACRON_RBD_KEYRING: {path} is readable by others (mode {mode & 0o777:o}): chmod 600 it"
        )
    return path


def _strategy(value: str) -> str:
    if value not in ("spread", "pack"):
        raise ValueError(f"NOVACRON_PLACEMENT_STRATEGY must be 'spread' or 'pack', not {value!r}")
    return value


def _metrics_engine(value: str) -> str:
    if value not in ("victoriametrics", "prometheus", "external"):
        raise ValueError(
            f"NOVACRON_METRICS_ENGINE must be 'victoriametrics', 'prometheus' or 'external', not {value!r}"
        )
    return value


def _login_settings() -> dict[str, Any]:
    """The login throttle's and password hashing's settings (NOVACRON_LOGIN_*)."""
    return {
        "login_account_failures": int(_env("LOGIN_ACCOUNT_FAILURES", "5")),
        "login_source_failures": int(_env("LOGIN_SOURCE_FAILURES", "20")),
        "login_backoff_s": float(_env("LOGIN_BACKOFF_S", "1")),
        "login_backoff_max_s": float(_env("LOGIN_BACKOFF_MAX_S", "900")),
        "login_reset_s": float(_env("LOGIN_RESET_S", "3600")),
        "login_hash_workers": int(_env("LOGIN_HASH_WORKERS", str(max(1, (os.cpu_count() or 2) // 2)))),
        "login_hash_queue": int(_env("LOGIN_HASH_QUEUE", "32")),
        "threat_stuffing_accounts": int(_env("THREAT_STUFFING_ACCOUNTS", "10")),
        "threat_enumeration_404s": int(_env("THREAT_ENUMERATION_404S", "30")),
        "threat_window_s": float(_env("THREAT_WINDOW_S", "60")),
        "threat_block_s": float(_env("THREAT_BLOCK_S", "900")),
        "threat_delete_burst": int(_env("THREAT_DELETE_BURST", "50")),
        "threat_allowlist": _networks(_env("THREAT_ALLOWLIST", "127.0.0.0/8,::1")),
    }


def _acme_settings() -> dict[str, Any]:
    """The load balancers' ACME settings (NOVACRON_ACME_*)."""
    bundle = _env("ACME_CA_BUNDLE", "")
    return {
        "acme_directory_url": _env("ACME_DIRECTORY", "https://acme-v02.api.letsencrypt.org/directory"),
        "acme_ca_bundle": Path(bundle).resolve() if bundle else None,
        "acme_renew_days": int(_env("ACME_RENEW_DAYS", "30")),
        "acme_check_interval_s": float(_env("ACME_CHECK_INTERVAL_S", "3600")),
    }


def _egress_allow(value: str) -> tuple[IPNetwork, ...]:
    from novacron.netguard import parse_networks

    return parse_networks(value)


class _GslbSettings(TypedDict):
    gslb_zone: str
    gslb_dns_address: str
    gslb_dns_port: int
    gslb_health_interval_s: int


def _gslb() -> _GslbSettings:
    """Global load balancing's settings (NOVACRON_GSLB_*)."""
    return {
        "gslb_zone": _env("GSLB_ZONE", ""),
        "gslb_dns_address": _env("GSLB_DNS_ADDRESS", "127.0.0.1"),
        "gslb_dns_port": int(_env("GSLB_DNS_PORT", "5353")),
        "gslb_health_interval_s": int(_env("GSLB_HEALTH_INTERVAL_S", "2")),
    }


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    database_url: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    #: the address this host's agent listens on for incoming live migrations
    migration_address: str = "127.0.0.1"
    #: HTTPS listener for node agents (0 turns it off)
    agent_port: int = 8443
    #: "auto" picks KVM only where the host really supports it, else TCG.
    accelerator: str = "auto"
    #: hypervisor driver of the local node agent: "qemu" or "simulated".
    compute_driver: str = "qemu"
    host_name: str = field(default_factory=lambda: os.uname().nodename)
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 7 * 24 * 3600
    #: run the embedded node agent inside the server process (all-in-one node).
    embedded_agent: bool = True
    metrics_interval_s: float = 1.0
    #: placement strategy: "spread" (most free RAM first) or "pack" (fill hosts before using new ones)
    placement_strategy: str = "spread"
    #: live-resize ceiling: a VM boots with room for this many times its vCPUs and memory (within its
    #: host's); 1: none (compute.live_resize)
    hotplug_factor: int = 4
    #: the image store when it is not ``<state_dir>/images``: replicas of one control plane share
    #: it (shared or network storage), since any replica may receive an upload or run a task
    shared_images_dir: Path | None = None
    #: the ``file`` storage pool of volumes when it is not ``<state_dir>/volumes``: a filesystem
    #: every host mounts at the same path (NOVACRON_VOLUMES_DIR)
    shared_volumes_dir: Path | None = None
    #: the Ceph cluster of the ``rbd`` volume pool (its ceph.conf; unset: no rbd pool) and its pool
    rbd_conf: Path | None = None
    rbd_pool: str = "rbd"
    #: cephx: the platform's Ceph client (``novacron``: client.novacron) and its keyring file, at the
    #: same path on every host like the conf, mode 0600 (NOVACRON_RBD_USER, NOVACRON_RBD_KEYRING)
    rbd_user: str | None = None
    rbd_keyring: Path | None = None
    #: a VM moved (migration, HA restart, rebalance) this recently is not moved again by a rebalance
    rebalance_cooldown_s: float = 1800.0
    #: a rebalance moves a VM only to a host whose load is at least this much lower (0.10: 10 points)
    rebalance_threshold: float = 0.10
    #: a host whose agent has not reported for this long is marked down (HA monitor)
    host_down_after_s: float = 15.0
    #: durable tasks the leader replica runs at once, cluster-wide (most of a VM task's time is
    #: waiting on an agent: bench/bench_scale.py found 8 holding creates to ~0.7/s at 100 hosts)
    task_concurrency: int = 8
    #: an agent's self-fencing lease: renewed by every accepted report; when it runs out the agent
    #: (or its watchdog, if the agent died) hard-stops every VM of its host
    ha_lease_s: float = 20.0
    #: slack for clock rates and a slow kill: the HA monitor treats a host as fenced only after
    #: ``last_heartbeat + ha_lease_s + ha_fence_margin_s``
    ha_fence_margin_s: float = 5.0
    #: VM disks live here instead of the instance directory: storage other hosts reach at the same
    #: path (NFS, CephFS), which is what lets HA restart a VM on another host from its disk
    shared_storage_dir: Path | None = None
    #: how often usage is metered into the ledger (hourly; tests shorten it)
    metering_interval_s: float = 3600.0
    #: the currency of the price list (NOVACRON_CURRENCY, an ISO 4217 code): cost reports print it
    currency: str = "USD"
    #: how often the quota controller compares counters with what exists (reporting drift)
    quota_reconcile_interval_s: float = 600.0
    #: how often reservation windows are opened and closed
    reservation_tick_s: float = 5.0
    #: the event bus between replicas (NOVACRON_EVENT_BUS): "" (LISTEN/NOTIFY on PostgreSQL, one
    #: process on SQLite) or a NATS JetStream server, ``nats://host:port`` (eventbus_nats.py)
    event_bus: str = ""
    #: webhooks: the dispatcher's fallback round (it is woken by the event bus as events commit,
    #: and when a retry falls due; this catches what a lost wake-up missed)
    webhook_tick_s: float = 5.0
    #: webhooks: the first retry's delay (doubled per attempt, with full jitter, at most an hour)
    webhook_retry_base_s: float = 5.0
    #: webhooks: attempts per delivery before it is failed; failed attempts in a row that pause a
    #: subscription
    webhook_max_attempts: int = 8
    webhook_pause_after: int = 15
    #: how often scaling groups are checked for unhealthy members and a count off their desired
    autoscaling_reconcile_s: float = 15.0
    #: how often scaling groups' policies are evaluated from their metrics
    autoscaling_evaluate_s: float = 30.0
    #: this host's address on the underlay (the VXLAN tunnels' endpoint), reported by its agent
    underlay_ip: str = ""
    #: PCI addresses of this host's SR-IOV virtual functions for ``direct`` ports (NOVACRON_SRIOV_VFS)
    sriov_vfs: tuple[str, ...] = ()
    #: the vhost-user socket directory of this host's DPDK switch (NOVACRON_VHOST_USER_DIR)
    vhost_user_dir: Path | None = None
    #: the network backend of this host's agent: "linux", "none" for a host without tenant networks,
    #: or "simulated" (in memory, with simulated load balancers: scale simulations only)
    network_backend: str = "linux"
    #: the dashboard's third-party browser assets (``npm ci`` of web/package.json puts them in
    #: web/node_modules of the checkout); None: that default
    web_vendor_dir: Path | None = None
    #: ranges outbound requests made for tenants may reach although private (image URLs, webhooks,
    #: health checks): NOVACRON_EGRESS_ALLOW=10.0.5.0/24,fd00:5::/64; this host's own addresses
    #: stay closed whatever it says
    egress_allow: tuple[IPNetwork, ...] = ()
    #: the ACME directory a load-balancer certificate is ordered from when its request names none
    #: (NOVACRON_ACME_DIRECTORY); a directory passes the egress guard like any tenant URL
    acme_directory_url: str = "https://acme-v02.api.letsencrypt.org/directory"
    #: the CA bundle ACME directories' TLS is verified with (NOVACRON_ACME_CA_BUNDLE); None: the system's
    acme_ca_bundle: Path | None = None
    #: ACME certificates are renewed this many days before they expire (NOVACRON_ACME_RENEW_DAYS)
    acme_renew_days: int = 30
    #: how often the renewal controller looks for certificates due (NOVACRON_ACME_CHECK_INTERVAL_S)
    acme_check_interval_s: float = 3600.0
    #: the API/dashboard listener's certificate and key (PEM files) when the operator brings their
    #: own (NOVACRON_TLS_CERT, NOVACRON_TLS_KEY); None: a certificate of the platform CA
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: extra DNS names and IP addresses for the platform CA's server certificate (NOVACRON_TLS_NAMES,
    #: comma-separated): the names clients reach this node by
    tls_names: tuple[str, ...] = ()
    #: serve the API/dashboard over plain HTTP (NOVACRON_PLAIN_HTTP=1): refused unless the listen
    #: address is loopback (tests, or a TLS-terminating proxy on the same host)
    plain_http: bool = False
    #: reverse proxies whose client-address header is believed (CIDRs; none by default): the
    #: address audit records and login throttling use comes from that header only behind them
    trusted_proxies: tuple[str, ...] = ()
    #: the header those proxies set: "x-forwarded-for" or "forwarded" (RFC 7239); only one is read,
    #: since a proxy passes the other through as the client sent it
    proxy_header: str = "x-forwarded-for"
    #: failed logins of one account (from anywhere) before each further try must wait (backoff)
    login_account_failures: int = 5
    #: failed logins from one client address (an IPv6 /64) before its backoff starts
    login_source_failures: int = 20
    #: the first wait; it doubles with every further failure, up to ``login_backoff_max_s``
    login_backoff_s: float = 1.0
    login_backoff_max_s: float = 900.0
    #: failures older than this (since the last one) are forgotten
    login_reset_s: float = 3600.0
    #: threat detection (identity/threats.py): failed logins for this many distinct accounts from
    #: one address within ``threat_window_s`` is credential stuffing; this many 404s on resources
    #: by id is enumeration; either blocks the address for ``threat_block_s`` seconds
    threat_stuffing_accounts: int = 10
    threat_enumeration_404s: int = 30
    threat_window_s: float = 60.0
    threat_block_s: float = 900.0
    #: successful DELETEs by one principal within ``threat_window_s`` reported as a burst (no block)
    threat_delete_burst: int = 50
    #: addresses (CIDRs) threat detection never blocks (NOVACRON_THREAT_ALLOWLIST, comma-separated)
    #: (loopback by default: a local proxy not declared trusted would make every client look like it)
    threat_allowlist: tuple[str, ...] = ("127.0.0.0/8", "::1")
    #: password hashes computed at once (threads of their own); 0: unbounded, in the shared
    #: thread pool (the old behaviour, for benchmarks only)
    login_hash_workers: int = max(1, (os.cpu_count() or 2) // 2)
    #: logins waiting for a hashing thread before more are answered 503 + Retry-After
    login_hash_queue: int = 32
    #: a new tenant's default quota limits (NOVACRON_TENANT_QUOTA_DEFAULTS): "" the built-in ones,
    #: "vms=20,vcpus=40" those overridden, "none" no default limits (see novacron.quota.defaults)
    tenant_quota_defaults: str = ""
    #: where key-encryption keys live: "file" (``<state_dir>/kek``), "pkcs11" or "vault"
    #: (NOVACRON_KEK_PROVIDER; see identity/kek.py)
    kek_provider: str = "file"
    #: the provider's other NOVACRON_KEK_* settings, lower-cased without the prefix (``vault_url``,
    #: ``vault_token_file``, ``pkcs11_module``, ``pkcs11_token``, ``pkcs11_pin_file``, ...)
    kek_options: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold a token or PIN
    #: the SMTP server alert emails are handed to (NOVACRON_SMTP_HOST, _PORT, _FROM, _STARTTLS,
    #: _USER, _PASSWORD); no host: email receivers cannot be created
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "novacron@localhost"
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    #: the metrics store (monitoring/store.py): "victoriametrics" or "prometheus" run by the node on
    #: loopback with data under ``<state_dir>/metrics``, or "external" at the two URLs below
    metrics_engine: str = "victoriametrics"
    #: how long the embedded engine keeps samples (its own duration syntax: 30d, 12w, 1y)
    metrics_retention: str = "30d"
    #: an external store's Prometheus HTTP API base URL (``.../api/v1/query`` below it)
    metrics_url: str = ""
    #: an external store's remote-write URL
    metrics_write_url: str = ""
    #: an OpenTelemetry collector's OTLP/HTTP endpoint (``http://collector:4318``) spans are also
    #: sent to (NOVACRON_OTLP_ENDPOINT; headers from OTEL_EXPORTER_OTLP_HEADERS); "": the local store only
    otlp_endpoint: str = ""
    #: the local trace store keeps spans this long (NOVACRON_TRACE_RETENTION_HOURS) ...
    trace_retention_hours: float = 24.0
    #: ... and at most this many (NOVACRON_TRACE_MAX_SPANS), the oldest dropped first
    trace_max_spans: int = 100_000
    #: the share of API requests traced (NOVACRON_TRACE_SAMPLE_RATIO, 0-1; a caller's sampled
    #: ``traceparent`` is always followed)
    trace_sample_ratio: float = 1.0
    #: host:port this replica's Alertmanager gossips on with the other replicas' (a name or address
    #: in its certificate, NOVACRON_TLS_NAMES), so that a cluster notifies once and shares
    #: silences (NOVACRON_ALERTING_CLUSTER_ADDRESS); "": a lone Alertmanager on loopback
    alerting_cluster_address: str = ""
    #: score VM series with the streaming anomaly detector on the write path (monitoring/anomaly_feed.py)
    anomaly_detection: bool = True
    #: the anomaly score from which a VM series' crossing is a ``vm.anomaly`` event
    anomaly_event_threshold: float = 0.5
    #: how long a new series learns (its daily pattern) before it is scored (sample time)
    anomaly_learning_s: float = 86_400.0
    #: the least time between two ``vm.anomaly`` events of one VM
    anomaly_event_interval_s: float = 300.0
    #: the resolution of the scored series: rates are means over this long (monitoring/anomaly_feed.py)
    anomaly_step_s: float = 10.0
    #: the DNS zone global load balancing answers (NOVACRON_GSLB_ZONE, e.g. "gslb.example.com");
    #: "": no global load balancing on this platform
    gslb_zone: str = ""
    #: where this node's PowerDNS answers it (NOVACRON_GSLB_DNS_ADDRESS, NOVACRON_GSLB_DNS_PORT)
    gslb_dns_address: str = "127.0.0.1"
    gslb_dns_port: int = 5353
    #: how often PowerDNS checks each site (NOVACRON_GSLB_HEALTH_INTERVAL_S, whole seconds)
    gslb_health_interval_s: int = 2

    @property
    def images_dir(self) -> Path:
        return self.shared_images_dir or self.state_dir / "images"

    @property
    def volumes_dir(self) -> Path:
        return self.shared_volumes_dir or self.state_dir / "volumes"

    @property
    def instances_dir(self) -> Path:
        return self.state_dir / "instances"

    @property
    def run_dir(self) -> Path:
        """Sockets and pidfiles: short paths, since unix sockets cap at 107 bytes."""
        return self.state_dir / "run"

    def ensure_dirs(self) -> None:
        """Make the state directories, private to the account the node runs as (0700)."""
        for d in (self.state_dir, self.images_dir, self.instances_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    @classmethod
    def from_env(cls) -> Settings:
        state_dir = Path(_env("STATE_DIR", "/var/lib/novacron")).resolve()
        return cls(
            state_dir=state_dir,
            database_url=_env("DATABASE_URL", f"sqlite:///{state_dir}/novacron.db"),
            listen_host=_env("LISTEN_HOST", "127.0.0.1"),
            listen_port=int(_env("LISTEN_PORT", "8080")),
            agent_port=int(_env("AGENT_PORT", "8443")),
            migration_address=_env("MIGRATION_ADDRESS", "127.0.0.1"),
            accelerator=_env("ACCELERATOR", "auto"),
            compute_driver=_env("COMPUTE_DRIVER", "qemu"),
            host_name=_env("HOST_NAME", os.uname().nodename),
            access_token_ttl_s=int(_env("ACCESS_TOKEN_TTL", "900")),
            embedded_agent=_env("EMBEDDED_AGENT", "1") == "1",
            metrics_interval_s=float(_env("METRICS_INTERVAL", "1.0")),
            placement_strategy=_strategy(_env("PLACEMENT_STRATEGY", "spread")),
            hotplug_factor=max(1, int(_env("HOTPLUG_FACTOR", "4"))),
            shared_images_dir=Path(_env("IMAGES_DIR", "")).resolve() if _env("IMAGES_DIR", "") else None,
            shared_volumes_dir=Path(_env("VOLUMES_DIR", "")).resolve() if _env("VOLUMES_DIR", "") else None,
            rbd_conf=Path(_env("RBD_CONF", "")).resolve() if _env("RBD_CONF", "") else None,
            rbd_pool=_env("RBD_POOL", "rbd"),
            rbd_user=_env("RBD_USER", "") or ("admin" if _env("RBD_KEYRING", "") else None),
            rbd_keyring=_keyring(_env("RBD_KEYRING", "")),
            event_bus=_event_bus(_env("EVENT_BUS", "")),
            rebalance_cooldown_s=float(_env("REBALANCE_COOLDOWN_S", "1800")),
            rebalance_threshold=float(_env("REBALANCE_THRESHOLD", "0.10")),
            host_down_after_s=float(_env("HOST_DOWN_AFTER_S", "15")),
            task_concurrency=max(1, int(_env("TASK_CONCURRENCY", "8"))),
            ha_lease_s=float(_env("HA_LEASE_S", "20")),
            ha_fence_margin_s=float(_env("HA_FENCE_MARGIN_S", "5")),
            currency=_env("CURRENCY", "USD"),
            **_controller_env(),
            shared_storage_dir=(
                Path(_env("SHARED_STORAGE_DIR", "")).resolve() if _env("SHARED_STORAGE_DIR", "") else None
            ),
            underlay_ip=_env("UNDERLAY_IP", ""),
            sriov_vfs=tuple(vf.strip() for vf in _env("SRIOV_VFS", "").split(",") if vf.strip()),
            vhost_user_dir=Path(_env("VHOST_USER_DIR", "")) if _env("VHOST_USER_DIR", "") else None,
            network_backend=_env("NETWORK_BACKEND", "linux"),
            web_vendor_dir=Path(_env("WEB_VENDOR_DIR", "")).resolve() if _env("WEB_VENDOR_DIR", "") else None,
            egress_allow=_egress_allow(_env("EGRESS_ALLOW", "")),
            **_acme_settings(),
            tls_cert=Path(_env("TLS_CERT", "")).resolve() if _env("TLS_CERT", "") else None,
            tls_key=Path(_env("TLS_KEY", "")).resolve() if _env("TLS_KEY", "") else None,
            tls_names=tuple(n.strip() for n in _env("TLS_NAMES", "").split(",") if n.strip()),
            plain_http=_env("PLAIN_HTTP", "0") == "1",
            trusted_proxies=_networks(_env("TRUSTED_PROXIES", "")),
            proxy_header=_proxy_header(_env("PROXY_HEADER", "x-forwarded-for")),
            **_login_settings(),
            tenant_quota_defaults=_env("TENANT_QUOTA_DEFAULTS", ""),
            smtp_host=_env("SMTP_HOST", ""),
            smtp_port=int(_env("SMTP_PORT", "25")),
            smtp_from=_env("SMTP_FROM", "novacron@localhost"),
            smtp_starttls=_env("SMTP_STARTTLS", "0") == "1",
            smtp_user=_env("SMTP_USER", ""),
            smtp_password=_env("SMTP_PASSWORD", ""),
            kek_provider=_env("KEK_PROVIDER", "file"),
            metrics_engine=_metrics_engine(_env("METRICS_ENGINE", "victoriametrics")),
            metrics_retention=_env("METRICS_RETENTION", "30d"),
            metrics_url=_env("METRICS_URL", ""),
            metrics_write_url=_env("METRICS_WRITE_URL", ""),
            otlp_endpoint=_env("OTLP_ENDPOINT", ""),
            trace_retention_hours=float(_env("TRACE_RETENTION_HOURS", "24")),
            trace_max_spans=int(_env("TRACE_MAX_SPANS", "100000")),
            trace_sample_ratio=_ratio("TRACE_SAMPLE_RATIO", "1"),
            alerting_cluster_address=_host_port("ALERTING_CLUSTER_ADDRESS", ""),
            anomaly_detection=_env("ANOMALY_DETECTION", "1") == "1",
            anomaly_event_threshold=float(_env("ANOMALY_EVENT_THRESHOLD", "0.5")),
            anomaly_learning_s=float(_env("ANOMALY_LEARNING_S", "86400")),
            anomaly_event_interval_s=float(_env("ANOMALY_EVENT_INTERVAL_S", "300")),
            anomaly_step_s=float(_env("ANOMALY_STEP_S", "10")),
            **_gslb(),
            kek_options=tuple(
                sorted(
                    (k[len("NOVACRON_KEK_") :].lower(), v)
                    for k, v in os.environ.items()
                    if k.startswith("NOVACRON_KEK_") and k != "NOVACRON_KEK_PROVIDER"
                )
            ),
        )


def _controller_env() -> dict[str, Any]:
    """The background controllers' intervals (quota, autoscaling, the webhook dispatcher)."""
    return {
        "metering_interval_s": float(_env("METERING_INTERVAL_S", "3600")),
        "quota_reconcile_interval_s": float(_env("QUOTA_RECONCILE_INTERVAL_S", "600")),
        "reservation_tick_s": float(_env("RESERVATION_TICK_S", "5")),
        "autoscaling_reconcile_s": float(_env("AUTOSCALING_RECONCILE_S", "15")),
        "autoscaling_evaluate_s": float(_env("AUTOSCALING_EVALUATE_S", "30")),
        "webhook_tick_s": float(_env("WEBHOOK_TICK_S", "5")),
        "webhook_retry_base_s": float(_env("WEBHOOK_RETRY_BASE_S", "5")),
        "webhook_max_attempts": int(_env("WEBHOOK_MAX_ATTEMPTS", "8")),
        "webhook_pause_after": int(_env("WEBHOOK_PAUSE_AFTER", "15")),
    }
