"""Password logins and password changes: throttled, hashed on a bounded pool, alike for every miss.

A password check costs ~0.35 s of CPU (argon2id, 64 MiB). The old login hashed inside a
write transaction on the shared thread pool, so a flood of wrong passwords held SQLite's
write lock and every worker thread: other users' requests waited seconds. Now:

- the throttle (``throttle.py``) is asked first, in a read-only transaction: a blocked
  account or source is answered 429 + ``Retry-After`` without hashing anything, and so is
  a second attempt on a key past its free tries while one is being hashed (a burst sent at
  once is not hashed whole before its first failure is counted);
- hashes run on ``HashPool``: ``login_hash_workers`` threads of their own (argon2 releases
  the GIL), so the event loop and the shared thread pool serving other requests stay free;
  when more than ``login_hash_queue`` logins already wait, the next one is answered 503 +
  ``Retry-After`` at once instead of queueing without bound;
- no transaction is open while hashing; the failure count, or the new tokens, are written
  afterwards in a short one;
- an unknown username is checked against a dummy hash, counted against the same throttle
  keys and answered with the same words: status, body, timing and throttling are those of
  a wrong password.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio.to_thread
from sqlalchemy import select

from novacron.db.models import User
from novacron.identity.lookup import account_identity, resolve_login
from novacron.identity.mfa_policy import CHALLENGE_TTL_S, enrolled, new_challenge
from novacron.identity.passwords import check_policy, hash_password, needs_rehash, verify_password
from novacron.identity.throttle import LoginThrottle, Throttled, record_lockouts

if TYPE_CHECKING:
    from novacron.identity.tokens import TokenService

T = TypeVar("T")
WRONG = (
    "Wrong username or password. Users of a tenant other than 'default' sign in as name@tenant "
    "or name the tenant (the Tenant field, or novacron login --tenant)."
)
TARPIT_S = 0.5


def _throttled(retry_after: int) -> str:
    return f"Too many failed logins for this account or from this address; try again in {retry_after} s."


class LoginBusy(Exception):
    """Too many logins are waiting for a hashing thread; retry in a second."""

    retry_after = 1


@dataclass(frozen=True)
class Account:
    """What a login needs of a user row, read without holding a transaction open."""

    id: str
    username: str
    tenant_id: str | None
    password_hash: str
    disabled: bool


class LoginRefused(Exception):
    """A refused login or password check. ``account`` (when the username exists) is for the
    audit record only; the caller's answer never depends on it."""

    def __init__(self, status: int, detail: str, account: Account | None, throttled: Throttled | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.account = account
        self.retry_after = throttled.retry_after if throttled else None
        self.remaining_s = throttled.remaining_s if throttled else 0.0


@dataclass(frozen=True)
class LoggedIn:
    access_token: str
    refresh_token: str
    expires_in: int
    account: Account


@dataclass(frozen=True)
class MfaChallenged:
    """The password was right and the user has a second factor: a code is owed (``mfa_codes.py``)."""

    mfa_token: str
    expires_in: int
    account: Account


class HashPool:
    """Password hashing on ``workers`` threads of its own, with at most ``queue`` waiting."""

    def __init__(self, workers: int, queue: int) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="argon2") if workers > 0 else None
        self._limit = workers + queue
        self._pending = 0
        self._lock = threading.Lock()

    def _submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        assert self._pool is not None
        with self._lock:
            if self._pending >= self._limit:
                raise LoginBusy()
            self._pending += 1
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._done)  # also when the waiting request was cancelled
        return future

    def _done(self, _future: Future[T]) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._pool is None:  # unbounded: the shared thread pool (benchmarks' "before")
            return await anyio.to_thread.run_sync(fn, *args)
        return await asyncio.wrap_future(self._submit(fn, *args))

    def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        """From a worker thread (a sync handler): wait for a hashing thread."""
        if self._pool is None:
            return fn(*args)
        return self._submit(fn, *args).result()


class PasswordLogin:
    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self.db = tokens.db
        self.throttle = LoginThrottle(tokens.db, lambda: tokens.settings)
        settings = tokens.settings
        self.hashes = HashPool(settings.login_hash_workers, settings.login_hash_queue)

    # -- login -------------------------------------------------------------------------------

    async def login(
        self, username: str, password: str, source: str | None, *, tenant: str | None = None
    ) -> LoggedIn | MfaChallenged:
        """Tokens for these credentials (a challenge for a code when the user has a second factor),
        or ``LoginRefused`` (401, 429) / ``LoginBusy``. ``tenant``
        (name or id) picks among users of that name in several tenants (identity/lookup.py)."""
        try:
            account, key, admitted = await anyio.to_thread.run_sync(self._precheck, username, source, tenant)
        except LoginRefused as exc:
            if exc.retry_after is not None:
                # a tarpit: a blocked attempt costs no hashing, but answered at once a flood of them
                # still keeps a CPU busy (180 answers/s over 16 connections here); held a moment
                # (no thread, no lock), each connection sends only a couple a second
                await asyncio.sleep(TARPIT_S)
                exc.retry_after = max(1, math.ceil(exc.remaining_s - TARPIT_S))
                exc.detail = _throttled(exc.retry_after)
            raise
        try:
            ok = await self.hashes.run(verify_password, account.password_hash if account else None, password)
            if not ok or account is None:
                await anyio.to_thread.run_sync(self._failed, username, key, source, account)
                raise LoginRefused(401, WRONG, account)
        finally:
            self.throttle.release(admitted)
        if account.disabled:
            raise LoginRefused(401, f"The account '{username}' is disabled; ask an administrator.", account)
        rehash = None
        if needs_rehash(account.password_hash):
            rehash = await self.hashes.run(hash_password, password)
        return await anyio.to_thread.run_sync(self._issue, account, key, rehash)

    def _precheck(
        self, username: str, source: str | None, tenant: str | None = None, *, user_id: str | None = None
    ) -> tuple[Account | None, str, list[str]]:
        """The account (None if unknown), its throttle identity and the throttle keys admitted
        (``release`` them once the attempt is counted), unless the throttle says wait: one
        read-only transaction. The identity (identity/lookup.py) is the same for every spelling
        of the account and whether or not it exists, so unknown users and tenants are throttled
        exactly like existing ones."""
        with self.db.read_session() as session:
            target = resolve_login(session, username, tenant) if user_id is None else None
            row = session.execute(
                select(User.id, User.username, User.tenant_id, User.password_hash, User.disabled).where(
                    User.id == (target.user_id if target else user_id)
                )
            ).first()
            account = Account(*row) if row is not None else None
            if target is not None:
                key = target.key
            else:  # a user proving its password: its account, as any spelling of its login counts it
                tenant_id = account.tenant_id if account else None
                key = account_identity(session, account.username if account else username, tenant_id)
        # a transaction of its own: its snapshot (SQLite) must begin after admit takes its place
        with self.db.read_session() as session:
            try:
                admitted = self.throttle.admit(session, key, source)
            except Throttled as exc:
                raise LoginRefused(429, _throttled(exc.retry_after), account, exc) from None
        return account, key, admitted

    def _failed(self, username: str, key: str, source: str | None, account: Account | None) -> None:
        with self.db.session() as session:
            lockouts = self.throttle.failed(session, key, source)
            record_lockouts(
                session,
                lockouts,
                username=username,
                source=source,
                user_id=account.id if account else None,
                tenant_id=account.tenant_id if account else None,
            )

    def _issue(self, account: Account, key: str, rehash: str | None) -> LoggedIn | MfaChallenged:
        with self.db.session() as session:
            user = session.get(User, account.id)
            if user is None:  # deleted while we hashed
                raise LoginRefused(401, WRONG, None)
            if rehash is not None:
                user.password_hash = rehash
            if enrolled(session, user.id):
                # the account's failures are not reset yet: a right password must not buy fresh
                # guesses at the code (only a right code resets them)
                return MfaChallenged(new_challenge(session, user.id, key), CHALLENGE_TTL_S, account)
            self.throttle.succeeded(session, key)
            return LoggedIn(*self.tokens.issue(session, user), account=account)

    # -- setting a password ------------------------------------------------------------------

    def hash_new(self, password: str, *, username: str, context: tuple[str, ...] = ()) -> str:
        """The hash of a new password that passed the policy (``PasswordPolicyError`` if not).
        Call it before opening a transaction: hashing takes a third of a second."""
        check_policy(password, username=username, context=context)
        return self.hashes.run_blocking(hash_password, password)

    def check_current(self, user_id: str, username: str, password: str | None, source: str | None) -> None:
        """A user proving its current password (to change it) goes through the login throttle:
        a stolen access token must not become an unthrottled password-guessing oracle."""
        account, key, admitted = self._precheck(username, source, user_id=user_id)
        try:
            if password is None or account is None:
                raise LoginRefused(422, "required and must match when changing your own password", account)
            if not self.hashes.run_blocking(verify_password, account.password_hash, password):
                self._failed(username, key, source, account)
                raise LoginRefused(422, "required and must match when changing your own password", account)
        finally:
            self.throttle.release(admitted)

    def set_password(self, user_id: str, password_hash: str) -> None:
        """Store a new hash and end every session of the user (log in again with the new one)."""
        with self.db.session() as session:
            user = session.get(User, user_id)
            if user is not None:
                user.password_hash = password_hash
                self.tokens.revoke_user_sessions(user_id, session=session)
                self.throttle.succeeded(session, account_identity(session, user.username, user.tenant_id))
