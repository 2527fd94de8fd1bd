"""Identifiers: sortable ULIDs for rows, unguessable hashes for ticket holders."""

from __future__ import annotations

import base64
import secrets
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0

HASH_LENGTH = 22
_HASH_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def new_ulid() -> str:
    """A 26-character ULID: 48-bit millisecond time + 80 random bits.

    Ids made in the same process sort in creation order, also within one
    millisecond (the random part is incremented instead of redrawn).
    """
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = secrets.randbits(80)
        _last_ms, _last_rand = ms, rand
    # 130 bits of base32 (the top two zero): the 128-bit value moved to the top of 17
    # bytes, whose first 26 base32 characters are its 26 Crockford digits.
    value = (ms << 80) | rand
    return base64.b32encode((value << 6).to_bytes(17, "big"))[:26].decode().translate(
        _TO_CROCKFORD)


def new_ticket_hash() -> str:
    """A 22-character URL-safe bearer credential with 132 bits from the OS CSPRNG."""
    # The first 22 base64url characters of 17 random bytes: 132 uniform bits, the
    # same alphabet, one urandom call (a choice per character took 44; joins run
    # this inside the write lock).
    return secrets.token_urlsafe(17)[:HASH_LENGTH]


def is_ticket_hash(value: str) -> bool:
    """True when ``value`` has the shape of a ticket hash (says nothing of existence)."""
    return len(value) == HASH_LENGTH and all(c in _HASH_ALPHABET for c in value)


def new_token() -> str:
    """A 43-character URL-safe API token (256 bits)."""
    return secrets.token_urlsafe(32)
