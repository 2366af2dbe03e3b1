"""How many refusals (401, 429) the audit log takes, so an anonymous flood cannot fill it.

Refused requests are audited (a forged or expired token on a ``GET`` too), but an anonymous
client can send them as fast as the network allows. Each process therefore writes, per
minute, at most ``per_key`` refusal records for one key (the user when known, else the
client address) and at most ``anonymous`` for all keys without a user together. A refusal
over a limit is only counted; the next record written for that key carries the count
(``detail.suppressed``), so the log still says how many there were. Failed logins of a real
account are also bounded upstream by the login throttle (a handful a minute, then 429s).
With the defaults, an anonymous flood adds at most 120 records a minute per replica.
"""

from __future__ import annotations

import threading
import time

_OVERFLOW = "*"


class RefusalLimiter:
    def __init__(
        self, per_key: int = 20, anonymous: int = 120, window_s: float = 60.0, max_keys: int = 10_000
    ) -> None:
        self.per_key = per_key
        self.anonymous = anonymous
        self.window_s = window_s
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._window = 0.0
        self._anonymous_used = 0
        self._used: dict[str, int] = {}
        #: refusals not written, per key, until the key's next written record reports them
        self._suppressed: dict[str, int] = {}

    def admit(self, key: str, *, anonymous: bool) -> int | None:
        """None: do not write this refusal (it is counted). Otherwise write it, reporting the
        returned number of this key's refusals that were not written before it."""
        now = time.monotonic()
        with self._lock:
            if now - self._window >= self.window_s:
                self._window = now
                self._anonymous_used = 0
                self._used.clear()
            used = self._used.get(key, 0)
            if used >= self.per_key or (anonymous and self._anonymous_used >= self.anonymous):
                slot = key if key in self._suppressed or len(self._suppressed) < self.max_keys else _OVERFLOW
                self._suppressed[slot] = self._suppressed.get(slot, 0) + 1
                return None
            if len(self._used) < self.max_keys:
                self._used[key] = used + 1
            if anonymous:
                self._anonymous_used += 1
            return self._suppressed.pop(key, 0) + (self._suppressed.pop(_OVERFLOW, 0) if anonymous else 0)
