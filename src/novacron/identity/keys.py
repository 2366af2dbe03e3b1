"""JWT signing keys: generation, rotation, the public JWK set, and an in-memory key cache.

Private keys are stored in the ``signing_keys`` table as PKCS#8 PEM sealed by the encryption
service (``identity/encryption.py``: a data key per row, wrapped by the platform KEK, which is
not in the database), so a copy of the database alone cannot mint tokens.

Rotation makes a new active key and retires the old one. A retired key keeps verifying
and stays in the JWKS until the longest access-token TTL has passed since its retirement
(every token it signed has expired by then); after that it is pruned, unless it signed audit
checkpoints (``audit_chain.py``): those keep it, unpublished, to be verified.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.config import Settings
from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import AuditCheckpoint, SigningKey
from novacron.identity.encryption import encryption_for

SUPPORTED_ALGS = ("ES256", "RS256")
DEFAULT_ALG = "ES256"
#: how often a process re-reads which key is active (another replica may have rotated)
ACTIVE_REFRESH_S = 60.0
#: unknown kids trigger a reload at most this often, so garbage kids cannot hammer the database
UNKNOWN_KID_RELOAD_S = 1.0


def generate_key_pair(alg: str = DEFAULT_ALG) -> tuple[str, str]:
    """A fresh key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}; use one of {', '.join(SUPPORTED_ALGS)}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def private_pem_aad(kid: str) -> str:
    """What a signing key's sealed private key is bound to."""
    return f"signing_keys.private_pem:{kid}"


def public_jwk(kid: str, alg: str, public_pem: str) -> dict[str, Any]:
    public = serialization.load_pem_public_key(public_pem.encode())
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk_json = ECAlgorithm.to_jwk(public)
    elif isinstance(public, rsa.RSAPublicKey):
        jwk_json = RSAAlgorithm.to_jwk(public)
    else:
        raise ValueError(f"key {kid} is neither EC nor RSA")
    jwk: dict[str, Any] = json.loads(jwk_json)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    alg: str
    #: the cryptography public key object, ready for PyJWT
    public: Any
    #: None until the key is retired
    retired_at: datetime | None
    private: Any = None


class KeyRing:
    """The signing keys of the platform, cached in memory.

    Thread-safe. ``verification_key(kid)`` is a dict lookup on the hot path; an unknown
    kid reloads from the database (rate-limited) so keys made by other replicas are found.
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._lock = threading.Lock()
        self._public: dict[str, LoadedKey] = {}
        self._active: LoadedKey | None = None
        self._active_loaded = 0.0
        self._last_reload = 0.0

    # -- lifetimes ---------------------------------------------------------------------------

    @property
    def grace(self) -> timedelta:
        """How long a retired key keeps verifying: the longest access-token lifetime, plus skew."""
        return timedelta(seconds=self.settings.access_token_ttl_s + 60)

    def _usable(self, retired_at: datetime | None, now: datetime) -> bool:
        return retired_at is None or now < retired_at + self.grace

    # -- loading -----------------------------------------------------------------------------

    def _load(self, session: Session) -> None:
        """Re-read every usable key; caller holds the lock."""
        now = utcnow()
        rows = list(session.scalars(select(SigningKey).order_by(SigningKey.created_at)))
        public: dict[str, LoadedKey] = {}
        active: LoadedKey | None = None
        for row in rows:
            if not row.active and not self._usable(row.retired_at, now):
                continue
            key = LoadedKey(
                kid=row.kid,
                alg=row.alg,
                public=serialization.load_pem_public_key(row.public_pem.encode()),
                retired_at=None if row.active else row.retired_at,
            )
            public[row.kid] = key
            if row.active:
                # the newest active key signs; two can exist briefly if two replicas raced at start
                active = LoadedKey(
                    key.kid,
                    key.alg,
                    key.public,
                    None,
                    serialization.load_pem_private_key(self._private_pem(row).encode(), password=None),
                )
        self._public = public
        self._active = active
        self._active_loaded = self._last_reload = time.monotonic()

    def _private_pem(self, row: SigningKey) -> str:
        return encryption_for(self.settings).open_text(row.private_pem, private_pem_aad(row.kid))

    def reload(self) -> None:
        with self._lock, self.db.session() as session:
            self._load(session)

    def ensure_active(self, session: Session | None = None) -> LoadedKey:
        """The key that signs new tokens; made on first use when none exists."""
        active = self._active
        if active is not None and time.monotonic() - self._active_loaded < ACTIVE_REFRESH_S:
            return active
        with self._lock:
            if session is None:
                with self.db.session() as own:
                    return self._ensure_active_locked(own)
            return self._ensure_active_locked(session)

    def _ensure_active_locked(self, session: Session) -> LoadedKey:
        self._load(session)
        if self._active is None:
            self._create(session, DEFAULT_ALG)
            session.flush()
            self._load(session)
        assert self._active is not None
        return self._active

    def verification_key(self, kid: str) -> LoadedKey | None:
        """The public key for ``kid`` if it may still verify tokens, else None."""
        key = self._public.get(kid)
        if key is None and time.monotonic() - self._last_reload >= UNKNOWN_KID_RELOAD_S:
            try:
                self.reload()
            except Exception:  # the database being down must surface as 401/503 upstream, not here
                return None
            key = self._public.get(kid)
        if key is None or not self._usable(key.retired_at, utcnow()):
            return None
        return key

    # -- changes -----------------------------------------------------------------------------

    def _create(self, session: Session, alg: str) -> SigningKey:
        private_pem, public_pem = generate_key_pair(alg)
        kid = new_id("key")
        sealed = encryption_for(self.settings).seal_text(private_pem, private_pem_aad(kid))
        row = SigningKey(kid=kid, alg=alg, private_pem=sealed, public_pem=public_pem, active=True)
        session.add(row)
        return row

    def rotate(self, session: Session, alg: str = DEFAULT_ALG) -> SigningKey:
        """Make a new active key and retire the current one(s); prune keys past their grace.

        Takes effect in this process at once and in other replicas within ``ACTIVE_REFRESH_S``
        (old keys keep verifying meanwhile, so nothing breaks).
        """
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"unsupported signing algorithm {alg!r}; use one of {', '.join(SUPPORTED_ALGS)}")
        now = utcnow()
        # a key that signed audit checkpoints stays (unpublished) so they can still be verified
        signed = set(session.scalars(select(AuditCheckpoint.kid).distinct()))
        for row in session.scalars(select(SigningKey)):
            if row.active:
                row.active = False
                row.retired_at = now
            elif not self._usable(row.retired_at, now) and row.kid not in signed:
                session.delete(row)
        new = self._create(session, alg)
        session.flush()
        with self._lock:
            self._load(session)
        return new

    def jwks(self, session: Session | None = None) -> dict[str, Any]:
        """The public JWK set: the active key and retired keys still in their grace period."""
        if session is None:
            with self.db.session() as own:
                return self._jwks(own)
        return self._jwks(session)

    def _jwks(self, session: Session) -> dict[str, Any]:
        now = utcnow()
        keys = [
            public_jwk(row.kid, row.alg, row.public_pem)
            for row in session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc()))
            if row.active or self._usable(row.retired_at, now)
        ]
        return {"keys": keys}
