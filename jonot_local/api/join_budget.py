"""The join budget: how many tickets one anonymous client may take, and how fast.

Patients' phones share the clinic's network with the server, so an anonymous
join (a phone, or a browser at the entrance that is not a registered kiosk)
draws from two budgets kept per *client key*:

- **live tickets**: at most ``join_live_max`` (default 3) WAITING or CALLED
  tickets at once. Counted in the database (``domain.join_keys``): the key,
  hashed, is written in the join's own transaction with a conditional insert
  (one indexed statement), so the count is exact under concurrency and
  survives a restart; a ticket that ends leaves the count by itself.
- **rate**: a token bucket of ``join_per_min`` joins a minute (burst of the
  same size), in memory, so join-cancel-join cycling is bounded too. A restart
  refills it.

Over either → 429 ``rate_limited`` with ``Retry-After`` and a message naming
the client's own live codes ("You already hold 3 tickets: A004, B002, A007"),
never a hash.

**The key.** On the LAN (``trusted_proxies`` = 0) it is the client's address:
every phone on the Wi-Fi has its own, and clearing cookies does not reset it.
Behind the cloud's proxies (``trusted_proxies`` > 0) many phones share one
carrier address, so the key is a per-browser client id: a random id in the
``jonot_client`` cookie, signed with the app's secret key (itsdangerous), set
on the first join's response. A forged or missing cookie just gets a fresh id,
so each join is also drawn from a looser per-address budget
(``join_address_live_max``, ``join_address_per_min``): a script that drops
its cookie is bounded by its address, one NAT address is not throttled as one
phone. Keys are stored as an HMAC with the secret key (no address or id can
be read back from the database).

**Never limited**: staff-entered joins (a bearer token) and kiosks registered
in admin (``current_device()`` of kind ``kiosk``); they skip every check and
add no statement to the join.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Response, after_this_request, request
from itsdangerous import BadSignature, URLSafeSerializer

from ..db import Tx
from ..domain import join_keys
from ..runtime import runtime
from ..settings import Settings
from .clients import client_address, current_device
from .errors import ApiError
from .ratelimit import TokenBuckets

T = TypeVar("T")

CLIENT_COOKIE = "jonot_client"
CLIENT_COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie
LIVE_RETRY_AFTER_S = 60  # a live ticket ends when it is served: no exact time to give


@dataclass(frozen=True)
class JoinKeys:
    """The hashed keys one anonymous join is counted under."""

    client: str
    address: str | None = None  # only behind trusted proxies
    new_client_id: str | None = None  # a fresh id to hand out in the cookie


class JoinBudget:
    """The per-client budgets of anonymous joins of one app."""

    def __init__(self, secret_key: str, *, live_max: int = 3, per_min: int = 10,
                 address_live_max: int = 30, address_per_min: int = 60,
                 behind_proxy: bool = False) -> None:
        self.live_max = max(1, live_max)
        self.address_live_max = max(1, address_live_max)
        self.behind_proxy = behind_proxy
        self.clients = TokenBuckets(per_min)
        self.addresses = TokenBuckets(address_per_min)
        self._hmac_key = hashlib.sha256(b"jonot-join-key:" + secret_key.encode()).digest()
        self._ids = URLSafeSerializer(secret_key, salt="jonot-client-id")

    @classmethod
    def from_settings(cls, settings: Settings, secret_key: str) -> JoinBudget:
        return cls(secret_key, live_max=settings.join_live_max, per_min=settings.join_per_min,
                   address_live_max=settings.join_address_live_max,
                   address_per_min=settings.join_address_per_min,
                   behind_proxy=settings.trusted_proxies > 0)

    def hashed(self, raw: str) -> str:
        """What is stored of a key: an HMAC under the app's secret (128 bits, hex)."""
        return hmac.new(self._hmac_key, raw.encode(), hashlib.sha256).hexdigest()[:32]

    def client_id_cookie(self, client_id: str) -> str:
        """The signed cookie value carrying ``client_id``."""
        return self._ids.dumps(client_id)

    def client_id_from(self, cookie: str | None) -> str | None:
        """The client id of a cookie value this app signed, else ``None``."""
        if not cookie or len(cookie) > 200:
            return None
        try:
            value = self._ids.loads(cookie)
        except BadSignature:
            return None
        return value if isinstance(value, str) and value else None

    def keys_for(self, address: str, cookie: str | None) -> JoinKeys:
        """The keys of a join from ``address`` carrying the ``jonot_client`` cookie value."""
        if not self.behind_proxy:
            return JoinKeys(client=self.hashed("a:" + address))
        client_id = self.client_id_from(cookie)
        fresh = None
        if client_id is None:
            client_id = fresh = secrets.token_urlsafe(16)
        return JoinKeys(client=self.hashed("c:" + client_id),
                        address=self.hashed("a:" + address), new_client_id=fresh)

    def draw(self, keys: JoinKeys) -> int:
        """Take one join from the rate budgets: 0 when allowed, else seconds to wait."""
        if keys.address is not None:
            wait = self.addresses.retry_after(keys.address)
            if wait:
                return wait
        wait = self.clients.take(keys.client)
        if not wait and keys.address is not None:
            wait = self.addresses.take(keys.address)
        return wait

    def claim(self, tx: Tx, ticket_id: str, keys: JoinKeys) -> None:
        """Count the new ticket against its keys in ``tx``; ``ApiError`` 429 when over."""
        if join_keys.claim(tx, ticket_id, keys.client, self.live_max,
                           keys.address, self.address_live_max):
            return
        codes = join_keys.live_codes(tx, keys.client)
        if len(codes) >= self.live_max:
            message = (f"You already hold {len(codes)} tickets: {', '.join(codes)}. Cancel "
                       "one, or wait until one has been served, before taking another.")
        else:
            message = ("Many tickets are already waiting that were taken from this network "
                       "address. Please try again later, or ask at the desk.")
        raise rate_limited(message, LIVE_RETRY_AFTER_S)


def rate_limited(message: str, retry_after: int) -> ApiError:
    return ApiError(429, "rate_limited", message, headers={"Retry-After": str(retry_after)})


def _exempt(user: dict[str, Any] | None) -> bool:
    """Staff-entered joins and registered kiosks are never limited."""
    if user is not None:
        return True
    device = current_device()
    return device is not None and device["kind"] == "kiosk"


def _joined_ticket_id(tx: Tx) -> str | None:
    for event in tx.events:
        if event.get("kind") == "ticket" and event.get("action") == "joined":
            return str(event["ticket_id"])
    return None


def _set_cookie_later(budget: JoinBudget, client_id: str) -> None:
    value = budget.client_id_cookie(client_id)
    secure = request.is_secure

    @after_this_request
    def set_cookie(resp: Response) -> Response:
        resp.set_cookie(CLIENT_COOKIE, value, max_age=CLIENT_COOKIE_MAX_AGE, path="/",
                        httponly=True, samesite="Lax", secure=secure)
        return resp


def run_join(user: dict[str, Any] | None, issue: Callable[[Tx], T]) -> T:
    """``issue(tx)`` (which must issue the ticket: ``tickets.join`` or ``issue``) as the
    write block of a join, within the caller's join budget; returns what it returned.

    For anonymous callers this first draws from the rate budget (429 before any
    write when spent), then counts the new ticket against the live caps in the
    same transaction (429 and nothing committed when over). Staff and registered
    kiosks get a plain ``Store.run``. The block may run in another request's thread
    (``Store.run``): it must take what it needs from the request before.
    """
    rt = runtime()
    budget = rt.join_budget
    if budget is None or _exempt(user):
        return rt.store.run(issue)
    keys = budget.keys_for(client_address(), request.cookies.get(CLIENT_COOKIE))
    if keys.new_client_id is not None:
        _set_cookie_later(budget, keys.new_client_id)
    wait = budget.draw(keys)
    if wait:
        raise rate_limited(f"Too many tickets taken from here in a short time; try again in "
                           f"{wait} s.", wait)

    def counted(tx: Tx) -> T:
        issued = issue(tx)
        ticket_id = _joined_ticket_id(tx)
        if ticket_id is not None:
            budget.claim(tx, ticket_id, keys)
        return issued

    return rt.store.run(counted)


def wire(app: Any, settings: Settings) -> None:
    """Give the app its join budget (called from ``create_app``)."""
    app.extensions["jonot"].join_budget = JoinBudget.from_settings(
        settings, app.config["SECRET_KEY"])

