"""What a running app holds, reached in one place: settings, the store, the event hub
and the per-app limiters.

Every field is built by ``create_app``; one with a default can be left out by
other constructors (tests, tools), which then get a fresh one made from the
settings' defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

from .db import Store
from .events import EventHub
from .kiosk_keys import KioskKeys
from .settings import Settings
from .signin import SignInGuard
from .tokencache import TokenCache

if TYPE_CHECKING:  # the api package imports this module
    from .api.join_budget import JoinBudget
    from .api.ratelimit import HashLookupLimits, TokenBuckets
    from .api.streams import StreamRegistry
    from .printing import PrintService
    from .speech import SpeechService


def _default_hash_limits() -> HashLookupLimits:
    from .api.ratelimit import HashLookupLimits

    defaults = Settings()
    return HashLookupLimits(defaults.hash_lookup_per_min, defaults.hash_miss_per_min)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    hub: EventHub
    #: budgets of look-ups by ticket hash, per client address
    hash_limits: HashLookupLimits = field(default_factory=_default_hash_limits)
    signin: SignInGuard | None = None  # made by create_app
    streams: StreamRegistry | None = None  # live-stream slots and feed (create_app)
    join_budget: JoinBudget | None = None  # set by create_app
    discovery: Any = None  # the zeroconf announcer (jonot_local.lan), set by serve
    printing: PrintService | None = None  # kiosk receipts; made by create_app
    kiosk_keys: KioskKeys = field(default_factory=KioskKeys)  # the kiosk's double-tap guard
    speech: SpeechService | None = None  # displays' server-made announcements (create_app)
    speech_budget: TokenBuckets | None = None  # budgets of /display/speech per client (create_app)
    tokens: TokenCache | None = None  # accounts of recent bearer tokens (create_app)
    #: the server's own values of the settings admin can override (before any override)
    settings_baseline: dict[str, Any] = field(default_factory=dict)

    def account_for_token(self, token: str) -> dict[str, Any] | None:
        """The active account a live bearer token belongs to, or ``None``."""
        if self.tokens is not None:
            return self.tokens.account(token)
        from .domain import users

        with self.store.read(snapshot=False) as tx:  # one statement
            return users.user_for_token(tx, token)

    def apply_office_settings(self, saved: dict[str, Any]) -> None:
        """Use the office settings saved in admin (``domain.office.stored``) from now on; a
        setting not saved goes back to the server's own value."""
        for name in OVERRIDDEN:
            self.settings_baseline.setdefault(name, getattr(self.settings, name))
            value = saved.get(name, self.settings_baseline[name])
            setattr(self.settings, name, type(self.settings_baseline[name])(value))
        if self.streams is not None:
            self.streams.feed.default_service_s = self.settings.default_service_s


#: office settings (``domain.office.FIELDS``) that replace a server setting of the same name
OVERRIDDEN = ("language", "default_service_s")


def runtime() -> Runtime:
    """The runtime of the current Flask app."""
    rt: Runtime = current_app.extensions["jonot"]
    return rt
