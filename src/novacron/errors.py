"""Domain errors: what went wrong, in the platform's terms, for services to raise.

Services and the modules under them do not know they are behind HTTP. They raise one of these;
``api/errors.py`` is the one place that turns each class into a status code and an RFC 9457
problem body, and that prefixes a field with the part of the request it came from (``body.name``).

A field is named as the caller spelled it in the input the service was given: ``name``,
``networks.0.subnet``. ``FieldError.part`` says which part of the request that input was; it is
``body`` for almost everything a service validates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar


@dataclass(frozen=True)
class FieldError:
    """One offending input field and why."""

    field: str
    reason: str
    #: the part of the request the field is in: body, query, path or header; "" when ``field``
    #: is already a complete name (a policy's ``quota.vcpus``)
    part: str = "body"

    def qualified(self) -> str:
        """The field's full name as clients see it, ``body.name``."""
        return f"{self.part}.{self.field}" if self.part else self.field


class DomainError(Exception):
    """Base of every error a service raises on purpose; its text is safe to show the caller."""

    #: a short, constant summary of the class of problem (RFC 9457 ``title``)
    title = "Error"

    def __init__(
        self,
        detail: str,
        *,
        fields: list[FieldError] | None = None,
        extra: dict[str, Any] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = list(fields or [])
        #: extension members for the answer (RFC 9457 section 3.2), e.g. a policy's decision
        self.extra = dict(extra or {})
        if title is not None:
            self.title = title


class NotFound(DomainError):
    """The resource does not exist, or the caller may not know that it does."""

    title = "Not Found"

    def __init__(self, kind: str, ident: str, *, detail: str | None = None) -> None:
        # ``detail``: a more precise wording where the thing missing is a part of a resource
        super().__init__(detail or f"No {kind} '{ident}' exists or it is not visible to you.")
        self.kind = kind
        self.ident = ident


class InvalidInput(DomainError):
    """The request is well formed but a field's value cannot be accepted."""

    title = "Invalid request"

    def __init__(self, field: str, reason: str, *, part: str = "body") -> None:
        error = FieldError(field, reason, part)
        super().__init__(f"{field}: {reason}", fields=[error])


class MalformedInput(InvalidInput):
    """The request itself cannot be read as meant: a cursor we never issued, a bad header."""


class Conflict(DomainError):
    """The request contradicts the resource's current state; it may succeed once that changes."""

    title = "Conflict"


class NameTaken(Conflict):
    """A name that must be unique in its scope is already used."""

    def __init__(
        self, kind: str, name: str, field: str, scope: str = "in this project", *, part: str = "body"
    ) -> None:
        article = "An" if kind[0] in "aeiou" else "A"
        super().__init__(
            f"{article} {kind} named '{name}' already exists {scope}.",
            fields=[FieldError(field, f"already used {scope}", part)],
        )


class Ambiguous(Conflict):
    """A name given for one resource matches several the caller may use; ``candidates`` (also an
    extension member of the answer) are their ids, for the caller to pick one by id."""

    title = "Ambiguous name"

    def __init__(
        self, kind: str, name: str, candidates: list[str], field: str, *, part: str = "body"
    ) -> None:
        ids = ", ".join(candidates)
        super().__init__(
            f"More than one {kind} exists with the name '{name}' ({ids}); use the id of the one you mean.",
            fields=[FieldError(field, f"{len(candidates)} {kind}s are named '{name}': {ids}", part)],
            extra={"candidates": list(candidates)},
        )
        self.candidates = list(candidates)


class PreconditionFailed(DomainError):
    """The caller edited a copy older than what is stored now (``If-Match``)."""

    title = "Precondition Failed"


class Unauthenticated(DomainError):
    """No valid credential came with the request; ``bearer_error`` is the RFC 6750 error code
    (``invalid_token``) when a credential was presented and refused."""

    title = "Unauthorized"

    def __init__(self, detail: str, *, bearer_error: str | None = None) -> None:
        super().__init__(detail)
        self.bearer_error = bearer_error


class Forbidden(DomainError):
    """The caller is known but may not do this; a policy refusal carries its decision in ``extra``."""

    title = "Forbidden"


class TooLarge(DomainError):
    """An input is larger than the platform accepts (an image, a body)."""

    title = "Content Too Large"


class TooManyRequests(DomainError):
    """The caller must slow down; ``retry_after`` seconds is when to try again."""

    title = "Too Many Requests"

    def __init__(self, detail: str, *, retry_after: int, fields: list[FieldError] | None = None) -> None:
        super().__init__(detail, fields=fields)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A part the request needs is not available now (a key service, a host, an install step)."""

    title = "Service Unavailable"

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


E = TypeVar("E", bound=DomainError)


def on_field(cls: type[E], field: str, reason: str, *, part: str = "body", title: str | None = None) -> E:
    """An error of class ``cls`` about one field, worded "field: reason" like ``InvalidInput``:
    a project named in the body that does not exist is ``on_field(NotFound, "project_id", ...)``.
    Its ``title`` is "Invalid request", as for every answer that names the input at fault, unless
    ``title`` says otherwise."""
    error = FieldError(field, reason, part)
    exc = cls.__new__(cls)
    detail = f"{field}: {reason}"  # the field as the user typed it; ``errors`` keeps its part
    DomainError.__init__(exc, detail, fields=[error], title=title or InvalidInput.title)
    return exc
