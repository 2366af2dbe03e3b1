"""The DNS seam of global load balancing: what serves the platform's zone."""

from __future__ import annotations

import abc

from novacron.gslb.model import ZoneSpec


class DnsProvider(abc.ABC):
    """An authoritative DNS server answering the platform's global names from desired state."""

    @abc.abstractmethod
    def publish(self, zone: ZoneSpec) -> None:
        """Serve exactly ``zone`` from now on (it replaces what was published before)."""

    @abc.abstractmethod
    def ensure_running(self) -> None:
        """Start the server unless it runs; raises ``Unavailable`` when it cannot."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server (the published zone stays for the next start)."""
