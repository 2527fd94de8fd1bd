"""Settings, declared once: name, type, default and a help line.

Every setting can be overridden from the environment as ``JONOT_<NAME>`` and
from the command line; tests pass a plain dict to ``create_app``.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .paths import default_data_dir


def _meta(help_text: str, env: bool = True) -> dict[str, Any]:
    return {"help": help_text, "env": env}


@dataclass
class Settings:
    """Runtime settings of an office server. See ``jonot-local serve --help-settings``."""

    data_dir: Path = field(default_factory=default_data_dir, metadata=_meta(
        "Folder holding the database, secret key and backups."))
    location_name: str = field(default="", metadata=_meta(
        "Name of the office on pages, receipts and the LAN announcement; when set, it "
        "replaces the stored name at start."))
    default_service_s: float = field(default=300.0, metadata=_meta(
        "Assumed service time per ticket (seconds) before a queue has real data."))
    token_ttl_s: int = field(default=12 * 3600, metadata=_meta(
        "Lifetime of an API bearer token in seconds."))
    db_pool_size: int = field(default=8, metadata=_meta(
        "Database connections shared by all server threads (bounded, whatever the thread count)."))
    threads: int = field(default=600, metadata=_meta(
        "waitress worker threads; every open live stream holds one."))
    stream_reserve: int = field(default=24, metadata=_meta(
        "Worker threads kept free for ordinary requests; live streams beyond are refused (503)."))
    connection_limit: int = field(default=900, metadata=_meta(
        "Simultaneous client connections accepted by waitress."))
    sse_heartbeat_s: float = field(default=10.0, metadata=_meta(
        "Seconds between keep-alive comments on live streams (frees threads of gone clients)."))
    hash_lookup_per_min: int = field(default=600, metadata=_meta(
        "Look-ups by ticket hash allowed per client address per minute."))
    hash_miss_per_min: int = field(default=20, metadata=_meta(
        "Look-ups of unknown ticket hashes allowed per client address per minute."))
    hash_lookup_floor_ms: float = field(default=20.0, metadata=_meta(
        "Minimum response time of a look-up by hash, so timing does not tell whether it exists."))
    trusted_proxies: int = field(default=0, metadata=_meta(
        "Reverse proxies in front of the server whose X-Forwarded-For is trusted."))
    backup_interval_s: int = field(default=6 * 3600, metadata=_meta(
        "Seconds between automatic online backups while serving (0 turns them off)."))
    backup_keep: int = field(default=14, metadata=_meta(
        "Automatic backups kept; older ones are deleted."))
    # -- where serve listens (--host / --port override these)
    host: str = field(default="0.0.0.0", metadata=_meta(  # noqa: S104 - a LAN server
        "Address serve listens on (all interfaces by default, for kiosks and TVs on the LAN)."))
    port: int = field(default=8080, metadata=_meta(
        "TCP port serve listens on (0 picks a free one)."))

    # -- service-time estimate (domain/status.py ServiceEstimator)
    service_min_s: float = field(default=20.0, metadata=_meta(
        "Completed services shorter than this (seconds) are not learnt from: a call "
        "completed by mistake."))
    service_max_s: float = field(default=7200.0, metadata=_meta(
        "Completed services longer than this (seconds) are not learnt from: a ticket "
        "left open."))
    service_window: int = field(default=20, metadata=_meta(
        "Recent counted services of a queue whose median is its service time."))
    service_warmup: int = field(default=5, metadata=_meta(
        "Counted services a queue needs before its estimate stops leaning on "
        "JONOT_DEFAULT_SERVICE_S."))

    # What one client may hold: connections (per socket address), request
    # headers' time, live streams (per client address, per ticket, a reserve).
    connections_per_address: int = field(default=64, metadata=_meta(
        "Open connections one client address may hold (0: no cap); off behind "
        "trusted_proxies, where every connection comes from the proxy."))
    header_timeout_s: float = field(default=15.0, metadata=_meta(
        "Seconds a connection has to send a request's complete headers, from opening or "
        "from its previous response; slower ones are closed (live streams are not)."))
    streams_per_client: int = field(default=32, metadata=_meta(
        "Live streams one client address may hold (429 beyond; registered displays and "
        "desks are not counted)."))
    streams_per_ticket: int = field(default=4, metadata=_meta(
        "Live streams of one ticket open at once (its holder's tabs; 429 beyond)."))
    device_stream_reserve: int = field(default=32, metadata=_meta(
        "Live-stream slots only registered displays and desks may use."))

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None,
             environ: dict[str, str] | None = None) -> Settings:
        """Defaults, then ``JONOT_*`` environment variables, then ``overrides``.

        Raises ``ValueError`` with the variable's name when a value cannot be parsed.
        """
        environ = os.environ if environ is None else environ
        overrides = dict(overrides or {})
        values: dict[str, Any] = {}
        for f in fields(cls):
            env_name = "JONOT_" + f.name.upper()
            if f.name in overrides and overrides[f.name] is not None:
                raw: Any = overrides[f.name]
            elif f.metadata.get("env") and env_name in environ:
                raw = environ[env_name]
            else:
                continue
            values[f.name] = _coerce(f.name, f.type, raw, env_name)
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, help) for every setting."""
        out = []
        for f in fields(cls):
            if f.default is not MISSING:
                default = str(f.default)
            elif f.name == "data_dir":
                default = "platform user data dir"
            else:
                default = "computed at start"
            out.append(("JONOT_" + f.name.upper(), default, f.metadata["help"]))
        return out


def _coerce(name: str, type_name: Any, raw: Any, env_name: str) -> Any:
    type_name = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "")
    try:
        if type_name == "Path":
            return Path(raw).expanduser()
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{env_name}: cannot read {raw!r} as {type_name}") from None
