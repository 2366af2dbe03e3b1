"""The DNS seam of global load balancing: what serves the platform's zone."""

from __future__ import annotations

import abc

from novacron.gslb.model import ZoneSpec


class DnsProvider(abc.ABC):
    """An authoritative DNS server answering the platform's global names from desired state."""

    @abc.abstractmethod
    def publish(self, zone: ZoneSpec) -> None:
        """Serve exactly ``zone`` from now on (it replaces what was published before); works
        whether or not the server runs (a started one serves it at once)."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server (and keep it running) unless this object runs it already; raises
        ``Unavailable`` when it cannot. What was published before is served."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server (the published zone stays for the next start)."""
