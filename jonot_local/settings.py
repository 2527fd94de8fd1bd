"""Settings, declared once: name, type, default, help line and allowed range.

Every setting can be overridden from the environment as ``JONOT_<NAME>`` and
from the command line; tests pass a plain dict to ``create_app``. This module
is the only place that reads ``JONOT_*`` variables. ``Settings.load`` refuses a
value it cannot read or that is out of range (``ValueError`` naming the
variable), refuses an unknown override key (naming the nearest setting) and
logs one warning for each unknown ``JONOT_*`` environment variable.

``python -m jonot_local.settings`` prints the README's settings table;
``--write README.md`` refreshes it in place.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from .paths import default_data_dir

log = logging.getLogger("jonot_local.settings")

ENV_PREFIX = "JONOT_"
README_START = "<!-- settings-table:start (python -m jonot_local.settings --write README.md) -->"
README_END = "<!-- settings-table:end -->"


def _meta(help_text: str, env: bool = True, *, minimum: float | None = None,
          maximum: float | None = None, shown: str | None = None,
          secret: bool = False) -> dict[str, Any]:
    """A setting's metadata: its help line, whether ``JONOT_<NAME>`` sets it, its range
    (``minimum``/``maximum``, inclusive), the default as people should read it
    (``shown``) and whether its value is kept out of listings (``secret``)."""
    return {"help": help_text, "env": env, "min": minimum, "max": maximum, "shown": shown,
            "secret": secret}


@dataclass
class Settings:
    """Runtime settings of an office server. See ``jonot-local serve --help-settings``."""

    data_dir: Path = field(default_factory=default_data_dir, metadata=_meta(
        "Folder holding the database, secret key and backups.",
        shown="platform user data dir"))
    location_name: str = field(default="", metadata=_meta(
        "Name of the office on pages, receipts and the LAN announcement; when set, it "
        "replaces the stored name at start.", shown="none: keep the stored name"))
    default_service_s: float = field(default=300.0, metadata=_meta(
        "Assumed service time per ticket (seconds) before a queue has real data.",
        minimum=1, maximum=86_400))
    token_ttl_s: int = field(default=12 * 3600, metadata=_meta(
        "Lifetime of an API bearer token in seconds.", minimum=60, maximum=366 * 86_400))
    token_cache_s: float = field(default=5.0, metadata=_meta(
        "Seconds a bearer token's account is remembered between requests (0: looked up "
        "every time). Changes made on this server count at once; an account changed by "
        "the command line while the server runs counts within this time.",
        minimum=0, maximum=60))
    db_pool_size: int = field(default=8, metadata=_meta(
        "Database connections shared by all server threads (bounded, whatever the thread count).",
        minimum=1, maximum=64))
    threads: int = field(default=600, metadata=_meta(
        "waitress worker threads; every open live stream holds one.",
        minimum=2, maximum=10_000))
    thread_stack_kib: int = field(default=0, metadata=_meta(
        "Stack size of each waitress worker thread in KiB (0: the system's, often 8 MiB; at "
        "least 256). It bounds the address space thousands of stream threads reserve, not "
        "their resident memory.",
        minimum=0, maximum=65_536))
    stream_reserve: int = field(default=24, metadata=_meta(
        "Worker threads kept free for ordinary requests; live streams beyond are refused (503). "
        "Must be less than JONOT_THREADS.", minimum=1, maximum=10_000))
    connection_limit: int = field(default=900, metadata=_meta(
        "Simultaneous client connections accepted by waitress. Must exceed JONOT_THREADS.",
        minimum=2, maximum=100_000))
    sse_heartbeat_s: float = field(default=10.0, metadata=_meta(
        "Seconds between keep-alive comments on live streams (frees threads of gone clients).",
        minimum=0.05, maximum=300))
    hash_lookup_per_min: int = field(default=600, metadata=_meta(
        "Look-ups by ticket hash allowed per client address per minute.",
        minimum=1, maximum=10_000_000))
    hash_miss_per_min: int = field(default=20, metadata=_meta(
        "Look-ups of unknown ticket hashes allowed per client address per minute.",
        minimum=1, maximum=10_000_000))
    hash_lookup_floor_ms: float = field(default=20.0, metadata=_meta(
        "Minimum response time of a look-up by hash, so timing does not tell whether it exists.",
        minimum=0, maximum=5_000))
    trusted_proxies: int = field(default=0, metadata=_meta(
        "Reverse proxies in front of the server whose X-Forwarded-For is trusted.",
        minimum=0, maximum=10))
    # -- join budget: anonymous joins per client (staff and registered kiosks are exempt)
    join_live_max: int = field(default=3, metadata=_meta(
        "Live tickets (waiting or called) one anonymous client may hold at once.",
        minimum=1))
    join_per_min: int = field(default=10, metadata=_meta(
        "Anonymous joins one client may make per minute (a token bucket with that burst).",
        minimum=1))
    join_address_live_max: int = field(default=30, metadata=_meta(
        "Behind trusted_proxies: live anonymous tickets all clients of one forwarded "
        "address may hold (many phones share a carrier's address).", minimum=1))
    join_address_per_min: int = field(default=60, metadata=_meta(
        "Behind trusted_proxies: anonymous joins per minute from one forwarded address.",
        minimum=1))
    backup_interval_s: int = field(default=6 * 3600, metadata=_meta(
        "Seconds between automatic online backups while serving (0 turns them off).",
        minimum=0, maximum=366 * 86_400))
    backup_keep: int = field(default=14, metadata=_meta(
        "Automatic backups kept; older ones are deleted.", minimum=1, maximum=10_000))

    # -- where serve listens (--host / --port override these)
    host: str = field(default="0.0.0.0", metadata=_meta(  # noqa: S104 - a LAN server
        "Address serve listens on (all interfaces by default, for kiosks and TVs on the LAN)."))
    port: int = field(default=8080, metadata=_meta(
        "TCP port serve listens on (0 picks a free one).", minimum=0, maximum=65_535))

    # -- service-time estimate (domain/status.py ServiceEstimator)
    service_min_s: float = field(default=20.0, metadata=_meta(
        "Completed services shorter than this (seconds) are not learnt from: a call "
        "completed by mistake.", minimum=0, maximum=3_600))
    service_max_s: float = field(default=7200.0, metadata=_meta(
        "Completed services longer than this (seconds) are not learnt from: a ticket "
        "left open. Must exceed JONOT_SERVICE_MIN_S.", minimum=1, maximum=86_400))
    service_window: int = field(default=20, metadata=_meta(
        "Recent counted services of a queue whose median is its service time.",
        minimum=1, maximum=1_000))
    service_warmup: int = field(default=5, metadata=_meta(
        "Counted services a queue needs before its estimate stops leaning on "
        "JONOT_DEFAULT_SERVICE_S.", minimum=0, maximum=1_000))

    # -- printing and cloud sync (SPEC §10) ------------------------------------------------
    printer: str = field(default="", metadata=_meta(
        "Kiosk receipt printer, e.g. tcp://192.0.2.10:9100 or usb://VID:PID (also serve "
        "--printer).", shown="none"))
    cloud_url: str = field(default="", metadata=_meta(
        "Base URL of the cloud instance this office syncs with (http:// or https://); "
        "with JONOT_CLOUD_TOKEN it turns sync on.", shown="none: sync off"))
    cloud_token: str = field(default="", metadata=_meta(
        "This office's token for the cloud instance (from jonot-local cloud office add).",
        shown="none", secret=True))

    # -- signing in: password hashing and the budgets against guessing --
    password_hash_method: str = field(default="scrypt", metadata=_meta(
        "How new passwords are hashed (werkzeug: scrypt[:n:r:p] or pbkdf2[:hash[:iterations]]); "
        "stored hashes of any method keep working."))
    signin_free_failures: int = field(default=5, metadata=_meta(
        "Wrong passwords for one account from one address before sign-in waits begin "
        "(1 s, then doubling).", minimum=1, maximum=10_000_000))
    signin_address_free_failures: int = field(default=20, metadata=_meta(
        "Wrong passwords from one address, all accounts together, before its waits begin.",
        minimum=1, maximum=10_000_000))
    signin_account_free_failures: int = field(default=50, metadata=_meta(
        "Wrong passwords for one account from all addresses together before waits begin "
        "(not for addresses that signed in to it before, nor registered desks).",
        minimum=1, maximum=10_000_000))
    signin_max_delay_s: int = field(default=60, metadata=_meta(
        "Longest wait after repeated wrong passwords (seconds).", minimum=1, maximum=3_600))
    signin_forget_s: float = field(default=30.0, metadata=_meta(
        "One counted wrong password is forgotten every this many seconds.",
        minimum=0.1, maximum=10_000_000))
    signin_refusal_pause_s: float = field(default=0.25, metadata=_meta(
        "A sign-in refused for too many wrong passwords (429) is answered after this "
        "pause: a client repeating refused attempts as fast as they are answered then sends "
        "a few a second per connection instead of a thousand, which would slow the office "
        "(0: at once).", minimum=0.0, maximum=10.0))
    signin_hash_slots: int = field(default=1, metadata=_meta(
        "Password checks run at once (a scrypt check takes a core and 32 MB: one leaves the "
        "office PC's other cores to the queue).", minimum=1, maximum=64))
    signin_queue: int = field(default=16, metadata=_meta(
        "Sign-ins that may wait for a password check; more are refused at once (429).",
        minimum=0, maximum=10_000))

    # What one client may hold: connections (per socket address), request
    # headers' time, live streams (per client address, per ticket, a reserve).
    connections_per_address: int = field(default=64, metadata=_meta(
        "Open connections one client address may hold (0: no cap); off behind "
        "trusted_proxies, where every connection comes from the proxy.",
        minimum=0, maximum=100_000))
    header_timeout_s: float = field(default=15.0, metadata=_meta(
        "Seconds a connection has to send a request's complete headers, from opening or "
        "from its previous response; slower ones are closed (live streams are not).",
        minimum=0.5, maximum=3_600))
    streams_per_client: int = field(default=32, metadata=_meta(
        "Live streams one client address may hold (429 beyond; registered displays and "
        "desks are not counted).", minimum=1, maximum=100_000))
    streams_per_ticket: int = field(default=4, metadata=_meta(
        "Live streams of one ticket open at once (its holder's tabs; 429 beyond).",
        minimum=1, maximum=1_000))
    device_stream_reserve: int = field(default=32, metadata=_meta(
        "Live-stream slots only registered displays and desks may use (cut to the stream "
        "slots, JONOT_THREADS - JONOT_STREAM_RESERVE, when larger).", minimum=0, maximum=10_000))

    # -- pages: languages (jonot_local/i18n.py)
    language: str = field(default="en", metadata=_meta(
        "Language of the pages when neither the address (?lang=) nor the browser asks for one "
        "the server has (en, fi)."))
    time_zone: str = field(default="", metadata=_meta(
        "The office's time zone (IANA name, e.g. Europe/Helsinki): the days and hours of the "
        "reports.", shown="none: the server machine's"))
    display_language: str = field(default="", metadata=_meta(
        "Language of the TV displays and their spoken announcements (en, fi); empty: the "
        "display browser's own language.", shown="none: the browser's"))
    espeak: str = field(default="", metadata=_meta(
        "The espeak-ng program that speaks announcements for displays whose browser has no "
        "voice for their language (a path or a name on PATH).",
        shown="none: espeak-ng on PATH, or its Windows install folder"))
    speech_per_min: int = field(default=60, metadata=_meta(
        "Spoken announcements (/display/speech) one client address may fetch per minute.",
        minimum=1, maximum=100_000))
    # -- on the LAN: zeroconf announcement and the desk window's discovery (jonot_local/lan)
    mdns_hostname: str = field(default="jonot", metadata=_meta(
        "mDNS host name announced by serve (jonot.local); when another responder has it, "
        "jonot-2.local and so on."))
    mdns_interfaces: str = field(default="", metadata=_meta(
        "Comma-separated addresses to announce on and browse from (default: those serve "
        "listens on; the desk window: every interface).",
        shown="none: where serve listens"))
    mdns_poll_s: float = field(default=30.0, metadata=_meta(
        "Seconds between checks of the machine's addresses; serve announces again when "
        "they changed.", minimum=0.1, maximum=3600))

    # -- kiosk receipt printing (jonot_local/printing) ------------------------------------
    printer_timeout_s: float = field(default=4.0, metadata=_meta(
        "Longest wait for the printer at each step (connect, write, status reply), seconds.",
        minimum=0.05, maximum=120))
    printer_status: str = field(default="query", metadata=_meta(
        "query: ask a network printer's status (DLE EOT) before and after each receipt, to "
        "notice paper-out and a hung printer; off: for printers that do not answer it."))
    printer_qr: str = field(default="native", metadata=_meta(
        "native: the printer draws the QR code (GS ( k); image: send it as a picture, for "
        "printers without QR support."))
    printer_profile: str = field(default="TM-T20II", metadata=_meta(
        "python-escpos printer profile (code pages, paper width) of the receipt printers."))
    receipt_language: str = field(default="en", metadata=_meta(
        "Language of the receipt's lines: en or fi."))
    printer_attempts: int = field(default=3, metadata=_meta(
        "Tries per receipt before it is given up.", minimum=1, maximum=20))
    printer_max_age_s: float = field(default=60.0, metadata=_meta(
        "A receipt not printed this many seconds after the join is dropped (a late receipt "
        "would be handed to the wrong person).", minimum=1, maximum=3600))
    printer_queue: int = field(default=32, metadata=_meta(
        "Receipts that may wait for the printer; more are dropped at once.",
        minimum=1, maximum=10_000))

    # -- the cloud instance (jonot-local cloud serve) --------------------------------------
    cloud_database_url: str = field(default="", metadata=_meta(
        "Database of the cloud instance: postgresql://… (psycopg 3), or empty for SQLite "
        "in the data dir (also cloud serve --database-url).", shown="none: SQLite",
        secret=True))
    cloud_command_ttl_s: int = field(default=600, metadata=_meta(
        "Seconds a remote join or cancel waits for the office to fetch it before it "
        "expires (a fetched one never expires).", minimum=1, maximum=7 * 86_400))
    cloud_stale_after_s: int = field(default=180, metadata=_meta(
        "Seconds of silence from an office after which the cloud's ticket pages say "
        "\"updated N minutes ago\".", minimum=10, maximum=86_400))

    # -- cloud sync worker (sync/worker.py) --
    sync_heartbeat_s: float = field(default=30.0, metadata=_meta(
        "Seconds between pushes to the cloud when nothing changed (the heartbeat).",
        minimum=0.05, maximum=3_600))
    sync_debounce_s: float = field(default=0.2, metadata=_meta(
        "Seconds a change waits before it is pushed, so changes close together go in one batch.",
        minimum=0, maximum=60))
    sync_timeout_s: float = field(default=20.0, metadata=_meta(
        "Timeout of one request to the cloud (a long poll waits this much longer).",
        minimum=0.1, maximum=600))
    sync_retention_days: float = field(default=7.0, metadata=_meta(
        "Days an outbox entry is kept after the cloud acknowledged it.",
        minimum=0, maximum=3_650))
    sync_backoff_min_s: float = field(default=1.0, metadata=_meta(
        "Seconds of the first wait after a failed request to the cloud; each failure in a "
        "row doubles it (with full jitter) up to JONOT_SYNC_BACKOFF_MAX_S.",
        minimum=0.01, maximum=600))
    sync_backoff_max_s: float = field(default=300.0, metadata=_meta(
        "The longest wait between tries while the cloud cannot be reached.",
        minimum=0.01, maximum=3_600))

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_range(f, getattr(self, f.name), env_name(f.name))
        self._check_rules()

    def _check_rules(self) -> None:
        """Rules between settings; ``ValueError`` naming the variables."""
        if self.sync_backoff_min_s > self.sync_backoff_max_s:
            raise ValueError(
                f"JONOT_SYNC_BACKOFF_MIN_S ({self.sync_backoff_min_s}) must not be more than "
                f"JONOT_SYNC_BACKOFF_MAX_S ({self.sync_backoff_max_s})")
        if self.stream_reserve >= self.threads:
            raise ValueError(
                f"JONOT_STREAM_RESERVE ({self.stream_reserve}) must be less than JONOT_THREADS "
                f"({self.threads}), or no live stream could ever open")
        if self.connection_limit <= self.threads:
            raise ValueError(
                f"JONOT_CONNECTION_LIMIT ({self.connection_limit}) must exceed JONOT_THREADS "
                f"({self.threads}): open live streams would leave no connection for requests")
        if self.service_min_s >= self.service_max_s:
            raise ValueError(
                f"JONOT_SERVICE_MIN_S ({_num(self.service_min_s)}) must be less than "
                f"JONOT_SERVICE_MAX_S ({_num(self.service_max_s)})")
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ValueError(f"JONOT_DATA_DIR: {self.data_dir} is not a folder")
        if self.printer and "://" not in self.printer:
            raise ValueError(f"JONOT_PRINTER: {self.printer!r} is not a printer URI "
                             "(e.g. tcp://192.0.2.10:9100 or usb://VID:PID)")
        from .domain.users import check_hash_method

        try:
            check_hash_method(self.password_hash_method)
        except ValueError as exc:
            raise ValueError(f"JONOT_PASSWORD_HASH_METHOD: {exc}") from None
        from .domain.report_rollup import zone_for

        try:
            zone_for(self.time_zone)
        except ValueError as exc:
            raise ValueError(f"JONOT_TIME_ZONE: {exc}") from None
        if self.cloud_url and not self.cloud_url.startswith(("http://", "https://")):
            raise ValueError(f"JONOT_CLOUD_URL: {self.cloud_url!r} must start with "
                             "http:// or https://")

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, then ``JONOT_*`` environment variables, then ``overrides``.

        ``None`` in ``overrides`` means "not given". Raises ``ValueError`` naming the
        variable (or the override key) when a value cannot be read or is out of range,
        when settings contradict each other, and when an override key is unknown.
        Logs one warning per unknown ``JONOT_*`` environment variable.
        """
        environ = os.environ if environ is None else environ
        overrides = dict(overrides or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}{_nearest(unknown[0], known)}")
        env_names = {env_name(name) for name, f in known.items() if f.metadata.get("env")}
        for key in sorted(k for k in environ if k.startswith(ENV_PREFIX)):
            if key not in env_names:
                log.warning("unknown environment variable %s ignored%s", key,
                            _nearest(key, env_names, strip=ENV_PREFIX))
        values: dict[str, Any] = {}
        for name, f in known.items():
            if overrides.get(name) is not None:
                raw: Any = overrides[name]
                label = name
            elif f.metadata.get("env") and env_name(name) in environ:
                raw = environ[env_name(name)]
                label = env_name(name)
            else:
                continue
            values[name] = _coerce(f, raw, label)
            _check_range(f, values[name], label)
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, help) for every setting."""
        out = []
        for f in fields(cls):
            if f.metadata.get("shown") is not None:
                default = f.metadata["shown"]
            elif f.default is not MISSING:
                default = str(f.default)
            else:
                default = "computed at start"
            help_text = f.metadata["help"]
            low, high = f.metadata.get("min"), f.metadata.get("max")
            if low is not None or high is not None:
                help_text += f" Range: {_range_text(low, high)}."
            out.append((env_name(f.name), default, help_text))
        return out

    def shown(self, name: str) -> str:
        """The value of setting ``name`` as a listing may print it (secrets masked)."""
        f = next(f for f in fields(self) if f.name == name)
        value = getattr(self, name)
        if f.metadata.get("secret") and value:
            return "(set)"
        return str(value)


def process_environment() -> dict[str, str]:
    """A copy of the whole environment, for a process that runs itself again with it."""
    return dict(os.environ)


def env_name(name: str) -> str:
    """The environment variable of setting ``name``: ``JONOT_<NAME>``."""
    return ENV_PREFIX + name.upper()


def markdown_table() -> str:
    """The README's settings table, one row per setting, from ``Settings.describe()``."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for env, default, help_text in Settings.describe():
        rows.append(f"| `{env}` | {default} | {help_text.replace('|', '/')} |")
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    """``text`` (the README) with the block between the settings markers regenerated."""
    start, end = text.index(README_START), text.index(README_END)
    return text[:start + len(README_START)] + "\n" + markdown_table() + "\n" + text[end:]


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if float(value).is_integer() else str(value)


def _nearest(name: str, candidates: Any, strip: str = "") -> str:
    """`` (did you mean X?)`` for the candidate closest to ``name``, or ``""``."""
    by_stem = {c.removeprefix(strip): c for c in candidates}
    close = difflib.get_close_matches(name.removeprefix(strip), sorted(by_stem), n=1,
                                      cutoff=0.6)
    return f" (did you mean {by_stem[close[0]]}?)" if close else ""


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(f: Field[Any], raw: Any, label: str) -> Any:
    """``raw`` (a string from the environment, or a Python value) as the field's type."""
    type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    try:
        if type_name == "Path":
            if isinstance(raw, str) and not raw.strip():
                raise ValueError
            return Path(raw).expanduser()
        if type_name == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ValueError
        if type_name in ("int", "float"):
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, str):
                return int(raw.strip()) if type_name == "int" else float(raw.strip())
            if type_name == "int" and isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            if not isinstance(raw, int | float):
                raise ValueError
            return int(raw) if type_name == "int" else float(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except (TypeError, ValueError, OverflowError):
        names = {"int": "a whole number", "float": "a number", "bool": "true or false",
                 "Path": "a folder path", "str": "text"}
        raise ValueError(f"{label}: cannot read {raw!r} as "
                         f"{names.get(type_name, type_name)}") from None


def _check_range(f: Field[Any], value: Any, label: str) -> None:
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if value != value:  # NaN
        raise ValueError(f"{label}: {value} is not a number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{label}: {_num(value)} is out of range ({_range_text(low, high)})")


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{_num(low)} to {_num(high)}"
    return f"at least {_num(low)}" if low is not None else f"at most {_num(high)}"


def main(argv: list[str]) -> int:
    """Print the README settings table, or with ``--write FILE`` refresh it in FILE."""
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(readme_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    if argv:
        print("usage: python -m jonot_local.settings [--write README.md]", file=sys.stderr)
        return 2
    print(markdown_table())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
