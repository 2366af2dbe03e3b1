"""Certificates from an ACME certificate authority (RFC 8555), proved by the load balancer itself.

The platform is the ACME client; the protocol (JWS signing, nonces, polling) is certbot's ``acme``
library, not code of ours. Each tenant has an account key (EC P-256): kept 0600 at a path
(:func:`account_key`), or given to :class:`AcmeClient` (``lbaas/acme_service.py`` keeps it sealed
in the database). :meth:`AcmeClient.issue` orders a certificate for a listener's names,
answers each HTTP-01 challenge on the load balancer (the :class:`ChallengeResponder`, in practice
:class:`~novacron.lbaas.haproxy.HAProxyInstance`, whose HTTP listeners serve the token from a map
changed at run time), finalizes the order with a CSR for a fresh EC P-256 key, and returns the
issued chain with that key as one PEM bundle. :func:`issue_certificate` installs it on the load
balancer, which replaces a served certificate in place (no reload, no dropped connection);
:func:`renew` runs the same flow for a certificate's current names and :func:`renew_if_due` does
so when :func:`~novacron.lbaas.certificates.renew_due` says it is time.

Challenges are withdrawn from the load balancer once the order is decided, whatever the outcome.
This module does not judge the directory URL: ``lbaas/acme_service.py`` puts a tenant's directory
through the egress guard before it calls here. Its TLS is verified against ``ca_bundle`` when
given, the system's trust otherwise, never skipped.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from novacron.errors import InvalidInput, Unavailable
from novacron.lbaas.certificates import CertificateInfo, renew_due
from novacron.private import mkdir_private, write_private

USER_AGENT = "novacron-lbaas"


class ChallengeResponder(Protocol):
    """Where HTTP-01 answers are served: ``/.well-known/acme-challenge/<token>``."""

    def put_challenge(self, token: str, key_authorization: str) -> None: ...

    def remove_challenge(self, token: str) -> None: ...


class CertificateHolder(ChallengeResponder, Protocol):
    """A load balancer that answers challenges and serves certificates."""

    def put_certificate(self, cert_id: str, pem_bundle: str) -> CertificateInfo: ...

    def certificate(self, cert_id: str) -> CertificateInfo: ...


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def account_key(path: Path) -> JWKEC:
    """The ACME account key kept at ``path``, made (EC P-256, 0600) the first time."""
    if not path.exists():
        mkdir_private(path.parent)
        write_private(path, _private_pem(ec.generate_private_key(ec.SECP256R1())).decode())
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput("account_key", f"{path} is not an EC private key")
    return JWKEC(key=key)


@dataclass(frozen=True)
class AcmeDirectory:
    """An ACME server: its directory ``url``, the CA bundle its TLS is verified with (None: the
    system's), the contact address given to it, and how long an order may take."""

    url: str
    ca_bundle: str | None = None
    contact_email: str | None = None
    order_timeout_s: float = 90.0


class AcmeClient:
    """One tenant's ACME account on one ACME server: its key kept at a path (made the first time),
    or given (``lbaas/acme_service.py`` keeps it sealed in the database)."""

    def __init__(self, directory: AcmeDirectory, account: Path | JWKEC) -> None:
        self.directory = directory
        self.key = account if isinstance(account, JWKEC) else account_key(account)
        self._acme: client.ClientV2 | None = None

    def _client(self) -> client.ClientV2:
        """The protocol client, with the account registered (or found again by its key)."""
        if self._acme is not None:
            return self._acme
        net = client.ClientNetwork(self.key, alg=ES256, user_agent=USER_AGENT)
        if self.directory.ca_bundle is not None:
            # requests takes a CA bundle path where the library's signature says bool
            net.verify_ssl = self.directory.ca_bundle  # type: ignore[assignment]
        try:
            acme = client.ClientV2(client.ClientV2.get_directory(self.directory.url, net), net)
            registration = messages.NewRegistration.from_data(
                email=self.directory.contact_email, terms_of_service_agreed=True
            )
            try:
                acme.new_account(registration)
            except errors.ConflictError as existing:
                # this key has an account already: use it
                acme.query_registration(
                    messages.RegistrationResource(uri=existing.location, body=messages.Registration())
                )
        except (errors.Error, OSError) as exc:
            raise Unavailable(f"ACME server {self.directory.url}: {exc}") from exc
        self._acme = acme
        return acme

    def issue(self, names: Sequence[str], responder: ChallengeResponder) -> str:
        """A certificate for ``names`` proved over HTTP-01 on ``responder``: the issued chain and
        its new private key as one PEM bundle."""
        if not names:
            raise InvalidInput("names", "a certificate needs at least one DNS name")
        acme = self._client()
        key_pem = _private_pem(ec.generate_private_key(ec.SECP256R1()))
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.directory.order_timeout_s)
        tokens: list[str] = []
        try:
            order = acme.new_order(crypto_util.make_csr(key_pem, list(names)))
            for authorization in order.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue  # the server remembers a recent proof for this name
                challenge = self._http01(authorization)
                response, validation = challenge.response_and_validation(self.key)
                token = challenge.chall.encode("token")
                tokens.append(token)
                responder.put_challenge(token, validation)
                acme.answer_challenge(challenge, response)
            order = acme.poll_and_finalize(order, deadline)
        except errors.ValidationError as exc:
            raise Unavailable(f"ACME validation of {', '.join(names)} failed: {_problems(exc)}") from exc
        except (errors.Error, OSError) as exc:
            raise Unavailable(f"ACME order for {', '.join(names)}: {exc}") from exc
        finally:
            for token in tokens:
                responder.remove_challenge(token)
        return str(order.fullchain_pem).strip() + "\n" + key_pem.decode()

    @staticmethod
    def _http01(authorization: messages.AuthorizationResource) -> messages.ChallengeBody:
        for challenge in authorization.body.challenges:
            if isinstance(challenge.chall, challenges.HTTP01):
                return challenge
        name = authorization.body.identifier.value
        raise Unavailable(f"the ACME server offers no HTTP-01 challenge for {name}")


def _problems(exc: errors.ValidationError) -> str:
    """The servers' reasons, one per failed challenge."""
    return "; ".join(
        f"{authz.body.identifier.value}: {challenge.error}"
        for authz in exc.failed_authzrs
        for challenge in authz.body.challenges
        if challenge.error is not None
    )


def issue_certificate(
    acme: AcmeClient, holder: CertificateHolder, cert_id: str, names: Sequence[str]
) -> CertificateInfo:
    """Issue a certificate for ``names`` and install it on ``holder`` as ``cert_id``; a
    certificate the load balancer already serves is replaced in place."""
    return holder.put_certificate(cert_id, acme.issue(names, holder))


def renew(acme: AcmeClient, holder: CertificateHolder, cert_id: str) -> CertificateInfo:
    """Issue ``cert_id`` again for the names it holds and replace it without a reload."""
    return issue_certificate(acme, holder, cert_id, holder.certificate(cert_id).names)


def renew_if_due(
    acme: AcmeClient, holder: CertificateHolder, cert_id: str, days_before: int = 30
) -> CertificateInfo | None:
    """Renew ``cert_id`` when it expires within ``days_before`` days; the new certificate, or
    None when it is not yet time."""
    if not renew_due(holder.certificate(cert_id), days_before):
        return None
    return renew(acme, holder, cert_id)
