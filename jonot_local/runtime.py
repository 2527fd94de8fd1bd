"""What a running app holds: settings, the store and the event hub, reached in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from .db import Store
from .events import EventHub
from .settings import Settings

if TYPE_CHECKING:
    from .api.streams import StreamRegistry


@dataclass
class Runtime:
    settings: Settings
    store: Store
    hub: EventHub
    streams: StreamRegistry | None = None  # live-stream slots and feed (create_app)


def runtime() -> Runtime:
    """The runtime of the current Flask app."""
    return current_app.extensions["jonot"]
