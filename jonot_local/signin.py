"""Signing in: check a password without stalling the office, and throttle guessing.

``SignInGuard`` is made once per app (``create_app``) and used by every way of
signing in (the API's bearer tokens, the desk page's session). It knows nothing
of HTTP: callers pass the client's address and say whether the request comes
from a registered desk. One attempt goes:

1. refused with no hash work, after a short pause (``signin_refusal_pause_s``,
   so that a client repeating refused attempts cannot make the office answer a
   thousand a second), when one of three failure budgets is spent
   (``SignInThrottled``: the caller answers 429 with ``Retry-After``):
   the account from this address, this address over all accounts, and the
   account over all addresses (the last one, looser, does not apply to
   addresses that have signed in to the account before, nor to registered
   desks — so guessing from elsewhere never locks a nurse out of her desk);
2. the stored hash is read in a short read transaction;
3. the hash is checked with no transaction and no database connection held,
   by at most ``signin_hash_slots`` threads at once (a check takes a core and,
   for scrypt, about 32 MB); too many waiting is ``SignInBusy``;
4. a wrong password counts against the three budgets; a right one clears the
   account's failures from this address and, for ``sign_in``, a token is
   written in a short write transaction.

Each budget forgets one failure every ``signin_forget_s`` seconds. Past its
free failures, each further failure makes the key wait 1 s, then 2, 4, … up
to ``signin_max_delay_s``. Unknown users cost one check against a dummy hash
made with the same method as real ones, so they answer as slowly as a wrong
password. Token buckets (``api.ratelimit``) do not fit here: these budgets
grow their delay with every failure and are refunded by a success.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .db import Store
from .domain import users
from .domain.errors import AuthError, DomainError
from .settings import Settings

KNOWN_FOR_S = 30 * 24 * 3600   # an address that signed in to an account stays known this long
MAX_IN_FLIGHT_PER_ADDRESS = 2  # checks one address may have running or waiting at once
MAX_KEY = 64                   # longest username kept as a key (longer ones cannot exist)


DeskCheck = bool | Callable[[], bool]


class SignInThrottled(DomainError):
    """Too many wrong passwords lately: try again in ``retry_after`` seconds."""

    code = "rate_limited"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message or "Too many failed sign-ins; try again in "
                         f"{retry_after} s.", retry_after=retry_after)
        self.retry_after = retry_after


class SignInBusy(SignInThrottled):
    """Too many sign-ins are waiting for a password check: try again in a moment."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(retry_after, "Too many sign-ins are being checked right now; "
                         f"try again in {retry_after} s.")


@dataclass(frozen=True)
class SignedIn:
    """A successful sign-in: the account and, from ``sign_in``, its new bearer token."""

    user: dict[str, Any]
    token: str
    expires_at: str


class FailureBackoff:
    """Recent failures per key, forgotten linearly; past ``free`` of them, a growing delay.

    After failure number ``free + k`` (k = 0, 1, …) the key must wait
    ``min(max_delay_s, 2**k)`` seconds. One failure is forgotten every
    ``forget_s`` seconds (gradually: the count is rounded to decide the wait).
    Memory is bounded: the least recently failed keys go.
    """

    def __init__(self, free: int, max_delay_s: float, forget_s: float,
                 max_keys: int = 20_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.free = max(1, free)
        self.max_delay_s = max(1.0, float(max_delay_s))
        self.forget_s = max(0.001, float(forget_s))
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (failures, when counted, blocked until)
        self._state: OrderedDict[Any, tuple[float, float, float]] = OrderedDict()

    def retry_after(self, key: Any) -> int:
        """Whole seconds ``key`` must still wait (0: it may try now)."""
        with self._lock:
            state = self._state.get(key)
            left = state[2] - self._clock() if state else 0.0
        return 0 if left <= 0 else max(1, math.ceil(left))

    def failures(self, key: Any) -> float:
        """The failures ``key`` has now, after forgetting."""
        with self._lock:
            return self._decayed(key, self._clock())

    def failed(self, key: Any) -> None:
        """Count one failure for ``key`` (and start its delay once past the free ones)."""
        with self._lock:
            now = self._clock()
            count = self._decayed(key, now) + 1
            excess = math.floor(count + 0.5) - self.free  # forgetting is gradual: round
            until = now + min(self.max_delay_s, 2.0 ** excess) if excess >= 0 else 0.0
            self._state[key] = (count, now, until)
            self._state.move_to_end(key)
            while len(self._state) > self.max_keys:
                self._state.popitem(last=False)

    def clear(self, key: Any) -> None:
        """Forget every failure of ``key``."""
        with self._lock:
            self._state.pop(key, None)

    def _decayed(self, key: Any, now: float) -> float:
        state = self._state.get(key)
        if state is None:
            return 0.0
        return max(0.0, state[0] - (now - state[1]) / self.forget_s)


class HashSlots:
    """At most ``slots`` password checks at once, at most ``queue`` more waiting."""

    def __init__(self, slots: int, queue: int, wait_s: float = 10.0) -> None:
        self.slots = max(1, slots)
        self.queue = max(0, queue)
        self.wait_s = wait_s
        self._sem = threading.Semaphore(self.slots)
        self._lock = threading.Lock()
        self._inside = 0  # running plus waiting

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot; ``SignInBusy`` at once when the queue is full or after ``wait_s``."""
        with self._lock:
            if self._inside >= self.slots + self.queue:
                raise SignInBusy()
            self._inside += 1
        try:
            if not self._sem.acquire(timeout=self.wait_s):
                raise SignInBusy()
            try:
                yield
            finally:
                self._sem.release()
        finally:
            with self._lock:
                self._inside -= 1


class SignInGuard:
    """Checks credentials for one app: throttled, bounded, never inside a write."""

    def __init__(self, store: Store, settings: Settings,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.refusal_pause_s = settings.signin_refusal_pause_s
        self._sleep = sleep
        self.token_ttl_s = settings.token_ttl_s
        self.method = users.check_hash_method(settings.password_hash_method)
        self.dummy = users.dummy_hash(self.method)
        def backoff(free: int) -> FailureBackoff:
            return FailureBackoff(free, settings.signin_max_delay_s, settings.signin_forget_s,
                                  clock=clock)

        self.by_account_address = backoff(settings.signin_free_failures)
        self.by_address = backoff(settings.signin_address_free_failures)
        self.by_account = backoff(settings.signin_account_free_failures)
        self.slots = HashSlots(settings.signin_hash_slots, settings.signin_queue)
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.checks = 0  # password checks done (figures and tests)

    def sign_in(self, username: Any, password: Any, address: str,
                registered_desk: DeskCheck = False) -> SignedIn:
        """Check the credentials, then issue a bearer token in a short write transaction.

        Raises ``ValidationError`` (a field missing), ``SignInThrottled`` /
        ``SignInBusy`` (try again after ``retry_after``) or ``AuthError``.
        """
        creds = self.check(username, password, address, registered_desk)
        with self.store.write() as tx:
            token, expires, user = users.open_session(tx, creds, self.token_ttl_s)
        return SignedIn(user, token, expires)

    def verify(self, username: Any, password: Any, address: str,
               registered_desk: DeskCheck = False) -> dict[str, Any]:
        """Check the credentials and return the account (for a session sign-in, no token).

        Raises as ``sign_in`` does.
        """
        creds = self.check(username, password, address, registered_desk)
        with self.store.read() as tx:
            return users.get_user(tx, creds.user_id)

    def check(self, username: Any, password: Any, address: str,
              registered_desk: DeskCheck = False) -> users.Credentials:
        """The account's credentials if the password is right; throttled as described above.

        ``registered_desk``: whether the request comes from a registered desk PC,
        or a function that tells (asked only when the account's budget matters).
        """
        username, password = users.require_login_fields(username, password)
        account = username.casefold()[:MAX_KEY]
        self._refuse_if_throttled(account, address, registered_desk, pause=True)
        with self._one_more_in_flight(address):
            with self.store.read() as tx:
                creds = users.find_credentials(tx, username)
            with self.slots.slot():
                # Checks ahead of this one may have spent a budget while it waited.
                self._refuse_if_throttled(account, address, registered_desk)
                with self._lock:
                    self.checks += 1
                ok = users.password_matches(creds, password, self.dummy)
                if not ok or creds is None:
                    self._failed(account, address)
                    raise AuthError("Wrong username or password.")
                self._succeeded(account, address)
        return creds

    def retry_after(self, username: str, address: str, registered_desk: DeskCheck = False
                    ) -> int:
        """Seconds this address must wait before trying this account (0: now)."""
        account = username.casefold()[:MAX_KEY]
        wait = max(self.by_account_address.retry_after((account, address)),
                   self.by_address.retry_after(address))
        if wait:
            return wait
        wait = self.by_account.retry_after(account)
        if not wait or self._is_known(account, address):
            return 0
        desk = registered_desk() if callable(registered_desk) else registered_desk
        return 0 if desk else wait

    def _refuse_if_throttled(self, account: str, address: str,
                             registered_desk: DeskCheck, pause: bool = False) -> None:
        """Raise ``SignInThrottled`` when a budget is spent; ``pause``: first wait
        ``refusal_pause_s`` (never while holding a hash slot or an in-flight place)."""
        wait = self.retry_after(account, address, registered_desk)
        if wait:
            if pause and self.refusal_pause_s > 0:
                self._sleep(self.refusal_pause_s)  # without the GIL: the office goes on
            raise SignInThrottled(wait)

    def _failed(self, account: str, address: str) -> None:
        self.by_account_address.failed((account, address))
        self.by_address.failed(address)
        self.by_account.failed(account)

    def _succeeded(self, account: str, address: str) -> None:
        self.by_account_address.clear((account, address))
        with self._lock:
            self._known[(account, address)] = self._clock() + KNOWN_FOR_S
            self._known.move_to_end((account, address))
            while len(self._known) > 20_000:
                self._known.popitem(last=False)

    def _is_known(self, account: str, address: str) -> bool:
        with self._lock:
            until = self._known.get((account, address))
        return until is not None and until > self._clock()

    @contextlib.contextmanager
    def _one_more_in_flight(self, address: str) -> Iterator[None]:
        with self._lock:
            if self._in_flight.get(address, 0) >= MAX_IN_FLIGHT_PER_ADDRESS:
                raise SignInBusy()
            self._in_flight[address] = self._in_flight.get(address, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._in_flight[address] - 1
                if left:
                    self._in_flight[address] = left
                else:
                    del self._in_flight[address]
