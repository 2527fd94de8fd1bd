"""Domain errors: what went wrong, in terms of the queue, never of HTTP.

Each carries a stable machine ``code``; the HTTP adapter maps codes to status
codes in one table (``jonot_local.api.errors``). ``details`` given as keywords
travel with the error (plain values appear in the API's problem body); a
``retry_after`` detail (seconds) also becomes a ``Retry-After`` header.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class. ``code`` is stable and documented; ``message`` is for people."""

    code = "domain_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    code = "not_found"


class QueueEmpty(DomainError):
    code = "queue_empty"


class QueueClosed(DomainError):
    code = "queue_closed"


class InvalidTransition(DomainError):
    code = "invalid_transition"


class VersionConflict(DomainError):
    code = "version_conflict"


class Conflict(DomainError):
    code = "conflict"


class ValidationError(DomainError):
    """Bad input. ``errors`` lists ``{"field", "message"}`` pairs."""

    code = "validation_error"

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []

    @classmethod
    def field(cls, name: str, message: str) -> ValidationError:
        return cls(f"{name}: {message}", [{"field": name, "message": message}])


class AuthError(DomainError):
    code = "unauthorized"


class RateLimited(DomainError):
    """Over a budget (guesses, joins …): try again in ``retry_after`` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float, **details: object) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after
