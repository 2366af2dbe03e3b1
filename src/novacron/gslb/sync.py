"""This node's DNS server, serving the tables: started with the node (supervised: restarted when
it dies), and every ``interval_s`` the whole zone is rendered from the database and published.

Each change is published by the node that commits it (``service.publish_after_commit``); this
loop is what brings the other replicas of a control plane (each with its own PowerDNS) to the
same zone within one interval, and what re-publishes a change whose publication failed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from novacron.config import Settings
from novacron.db.base import Database
from novacron.gslb import service

log = logging.getLogger(__name__)
RESYNC_INTERVAL_S = 30.0


class DnsSync:
    """This node's DNS server and a daemon thread re-publishing the zone from ``db`` every
    ``interval_s`` seconds."""

    def __init__(self, db: Database, settings: Settings, interval_s: float = RESYNC_INTERVAL_S) -> None:
        self.db = db
        self.settings = settings
        self.interval_s = interval_s
        self.dns = service.provider(settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="novacron-gslb-sync", daemon=True)

    def start(self) -> DnsSync:
        """Publish the tables, start the server (``Unavailable`` when it cannot), then keep
        re-publishing."""
        self.sync()
        self.dns.start()
        self._thread.start()
        return self

    def sync(self) -> None:
        with self.db.read_session() as session:
            service.publish_tables(session, self.settings, self.dns)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except (OSError, sqlite3.Error) as exc:
                log.warning("global load balancing DNS: %s (next try in %.0f s)", exc, self.interval_s)

    def close(self) -> None:
        """End the loop (the DNS server keeps running)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def stop(self) -> None:
        """End the loop and stop the DNS server."""
        self.close()
        self.dns.stop()
