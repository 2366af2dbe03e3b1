"""Keep this node's DNS server serving the tables: every ``interval_s`` the whole zone is rendered
from the database and published, and the server is started again if it died.

Each change is published by the node that commits it (``service.publish_after_commit``); this
loop is what brings the other replicas of a control plane (each with its own PowerDNS) to the
same zone, and what restarts a PowerDNS that stopped, within one interval.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from novacron.config import Settings
from novacron.db.base import Database
from novacron.errors import Unavailable
from novacron.gslb import service

log = logging.getLogger(__name__)
RESYNC_INTERVAL_S = 30.0


class DnsSync:
    """A daemon thread re-publishing the zone from ``db`` every ``interval_s`` seconds."""

    def __init__(self, db: Database, settings: Settings, interval_s: float = RESYNC_INTERVAL_S) -> None:
        self.db = db
        self.settings = settings
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="novacron-gslb-sync", daemon=True)

    def start(self) -> DnsSync:
        """Publish once now (raises ``Unavailable`` when the server cannot start), then keep at it."""
        self.sync()
        self._thread.start()
        return self

    def sync(self) -> None:
        with self.db.read_session() as session:
            service.start(session, self.settings)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except (Unavailable, OSError, sqlite3.Error) as exc:
                log.warning("global load balancing DNS: %s (next try in %.0f s)", exc, self.interval_s)

    def close(self) -> None:
        """End the loop (the DNS server keeps running)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def stop(self) -> None:
        """End the loop and stop the DNS server."""
        self.close()
        service.provider(self.settings).stop()
