"""Identifiers: sortable ULIDs for rows, unguessable hashes for ticket holders."""

from __future__ import annotations

import secrets
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two Crockford digits: a ULID is 13 look-ups.
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
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
    # 26 digits of 5 bits are 130 bits: the 128-bit value with two zero bits on top,
    # taken 10 bits at a time from the most significant end.
    value = (ms << 80) | rand
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in range(120, -1, -10)])


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
