"""What a running app holds: settings, the store and the event hub, reached in one place."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .db import Store
from .events import EventHub
from .settings import Settings
from .signin import SignInGuard


@dataclass
class Runtime:
    settings: Settings
    store: Store
    hub: EventHub
    signin: SignInGuard | None = None  # made by create_app


def runtime() -> Runtime:
    """The runtime of the current Flask app."""
    return current_app.extensions["jonot"]
