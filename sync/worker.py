"""The office's sync worker: pushes the outbox to the cloud and applies relayed actions.

Two named daemon threads, one request in flight each:

- ``jonot-sync-push`` sends the outbox in sequence order, at most ``MAX_BATCH``
  entries a request, a short debounce after a change, an empty push as the
  heartbeat when nothing changed. The cursor (``sync_state.acked_seq``) moves
  only to the ``acked_seq`` the cloud answered. ``rotate`` starts a new epoch
  (a full snapshot, counters moved past the cloud's numbers); ``frozen`` stops
  pushing and pulling and is shown to the admin.
- ``jonot-sync-actions`` long-polls ``GET actions`` and applies each action
  once (``sync.apply``), in ``cmd_seq`` order.

Every request has a timeout; failures (a broken connection mid-answer too) back
off exponentially with full jitter from 1 s to 5 min (``JONOT_SYNC_BACKOFF_MIN_S``
and ``_MAX_S``), and a ``Retry-After`` from the cloud is honoured. Nothing
here runs inside a local transaction while the network is used, so the office
never waits on the internet.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

from jonot_local.db import Store, Tx
from jonot_local.settings import Settings
from jonot_local.timeutil import parse_iso, utcnow, utcnow_iso

from . import outbox
from .apply import CommandGap, apply_action
from .protocol import MAX_BATCH, MAX_WAIT_S, PREFIX

log = logging.getLogger("jonot_local.sync")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 300.0
PRUNE_EVERY_S = 600.0
#: Codes of the cloud's refusals of the token itself (401/403).
REFUSED_CODES = ("unauthorized", "revoked", "forbidden")


# -- talking to the cloud ------------------------------------------------------------------

class CloudError(Exception):
    """A request to the cloud failed; ``str()`` says why in words."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code  # the cloud's stable code (``unauthorized``, ``revoked``…)

    @property
    def refused(self) -> bool:
        """The cloud refused this office's token: retrying soon cannot help."""
        return self.status in (401, 403)


class CloudClient:
    """JSON over HTTP(S) to the cloud with the office's bearer token (stdlib only)."""

    def __init__(self, base_url: str, token: str, timeout: float = 20.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the cloud URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | bytes | None = None,
                timeout: float | None = None) -> dict[str, Any]:
        """Send one request (``body``: an object, or JSON already encoded); the answer's
        JSON object. Raises ``CloudError``."""
        url = self.base_url + path
        data = body if isinstance(body, bytes) or body is None else json.dumps(
            body, separators=(",", ":")).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={  # noqa: S310
            "Authorization": f"Bearer {self.token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            # http(s) only: the scheme is checked above.
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail, code = _detail(exc)
            raise CloudError(_http_words(exc.code, detail), status=exc.code,
                             retry_after=_retry_after(exc.headers.get("Retry-After")),
                             code=code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CloudError(_network_words(self.base_url, exc)) from None
        except http.client.HTTPException as exc:
            # The connection broke mid-answer (IncompleteRead) or the answer was not
            # HTTP at all: the request may or may not have been applied, so it is tried
            # again like any network failure (the cloud takes a replay as a duplicate).
            raise CloudError(f"the connection to the cloud at {self.base_url} broke "
                             f"off ({type(exc).__name__})") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise CloudError("the cloud answered something that is not JSON") from None
        if not isinstance(answer, dict):
            raise CloudError("the cloud answered something that is not a JSON object")
        return answer


def _detail(exc: urllib.error.HTTPError) -> tuple[str, str | None]:
    """The refusal's words and stable code from the cloud's JSON problem, if any."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError, http.client.HTTPException):
        return "", None
    if isinstance(body, dict):
        code = body.get("code")
        return (str(body.get("detail") or body.get("message") or body.get("title") or ""),
                str(code)[:40] if code else None)
    return "", None


def _http_words(status: int, detail: str) -> str:
    words = {401: "the cloud refused this office's token (check JONOT_CLOUD_TOKEN)",
             403: "the cloud refused this office (its token may have been revoked)",
             404: "the cloud has no sync endpoint at this address (check JONOT_CLOUD_URL)",
             409: "the cloud refused the push as conflicting",
             429: "the cloud asked to slow down",
             503: "the cloud is unavailable for now"}.get(status)
    text = words or (f"the cloud failed ({status})" if status >= 500
                     else f"the cloud refused the request ({status})")
    return f"{text}: {detail}" if detail else text


def _network_words(base_url: str, exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError) and "not yet valid" in str(reason):
        return ("the cloud's certificate is not yet valid: this computer's clock is probably "
                "wrong")
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"the cloud at {base_url} did not answer in time"
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return f"cannot reach the cloud at {base_url}: {text}"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


class Backoff:
    """Exponential backoff with full jitter: a wait drawn from [0, min(cap, base·2ⁿ)]."""

    def __init__(self, base: float = BACKOFF_MIN_S, cap: float = BACKOFF_MAX_S,
                 rng: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.rng = base, cap, rng
        self.failures = 0

    def next(self, retry_after: float | None = None) -> float:
        """The wait after one more failure (at least ``retry_after`` when given)."""
        ceiling = min(self.cap, self.base * 2 ** self.failures)
        self.failures += 1
        wait = max(self.base * 0.1, ceiling * self.rng())
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait

    def reset(self) -> None:
        self.failures = 0


# -- the sync state, for health and the CLI --------------------------------------------------

def sync_status(tx: Tx, configured: bool, heartbeat_s: float = 30.0) -> dict[str, Any]:
    """``{"state": "off"|"online"|"offline"|"frozen"|"refused", "last_push_ok_at",
    "backlog", "last_error", "error_code", "clock_skew_s", "epoch_id"}`` read from the
    database. ``refused``: the cloud refused the token (wrong or revoked) since the last
    push that went through."""
    st = tx.one("SELECT * FROM sync_state WHERE id = 1")
    ident = tx.one("SELECT epoch_id FROM sync_identity WHERE id = 1")
    backlog = tx.one("SELECT COUNT(*) AS n FROM outbox WHERE seq > ?", (st["acked_seq"],))["n"]
    # (read-only readers may meet a database the server has not migrated yet)
    code = st["last_error_code"] if "last_error_code" in st.keys() else None  # noqa: SIM118 - a sqlite3.Row
    if not configured:
        state = "off"
    elif st["frozen_at"]:
        state = "frozen"
    elif code in REFUSED_CODES and st["last_error_at"] and (
            st["last_ok_at"] is None or st["last_error_at"] > st["last_ok_at"]):
        state = "refused"
    elif st["last_ok_at"] and (st["last_error_at"] is None
                               or st["last_ok_at"] >= st["last_error_at"]) \
            and (utcnow() - parse_iso(st["last_ok_at"])).total_seconds() < 3 * heartbeat_s + 10:
        state = "online"
    else:
        state = "offline"
    last_error = st["frozen_message"] if state == "frozen" else st["last_error"]
    return {"state": state, "last_push_ok_at": st["last_ok_at"], "backlog": int(backlog),
            "last_error": last_error,
            "error_code": "frozen" if state == "frozen" else code,
            "clock_skew_s": st["clock_skew_s"],
            "epoch_id": ident["epoch_id"] if ident else None}


# -- reading a batch ---------------------------------------------------------------------------

# Each entry as JSON text around the stored payload (JSON already), put together by
# SQLite in one aggregate row: no decoding and re-encoding of 500 snapshots, and one
# step of the statement instead of one per row. Every step of a statement releases
# and retakes the GIL, and while request threads run, each retake can wait a switch
# interval (5 ms): 500 steps a batch made a backlog drain at a third of its speed.
_BATCH_SQL = (
    "SELECT COUNT(*) AS n, group_concat(seq) AS seqs, group_concat("
    "'{\"seq\":' || seq || ',\"entity\":' || json_quote(entity) || ',\"entity_id\":' || "
    "json_quote(entity_id) || ',\"version\":' || version || ',\"payload\":' || payload || "
    "',\"entry_hash\":\"' || entry_hash || '\"}', char(30)) AS entries FROM ("
    "SELECT seq, entity, entity_id, version, payload, entry_hash FROM outbox "
    "WHERE seq > ? ORDER BY seq LIMIT ?)")


def _batch_entries(tx: Tx, acked_seq: int) -> list[str]:
    """The next batch of outbox entries after ``acked_seq``, each as JSON text, in order."""
    row = tx.one(_BATCH_SQL, (acked_seq, MAX_BATCH))
    if not row["n"]:
        return []
    seqs = [int(s) for s in row["seqs"].split(",")]
    entries = row["entries"].split("\x1e")  # a record separator never in JSON text
    if len(entries) == len(seqs) and all(a < b for a, b in zip(seqs, seqs[1:], strict=False)):
        return entries
    # SQLite does not promise the aggregate's order (it keeps the subquery's in
    # practice): row by row, then.
    rows = tx.all("SELECT seq, entity, entity_id, version, payload, entry_hash "
                  "FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (acked_seq, MAX_BATCH))
    return [f'{{"seq":{r["seq"]},"entity":{json.dumps(r["entity"])},'
            f'"entity_id":{json.dumps(r["entity_id"])},"version":{r["version"]},'
            f'"payload":{r["payload"]},"entry_hash":"{r["entry_hash"]}"}}' for r in rows]


# -- the worker --------------------------------------------------------------------------------

class SyncWorker:
    """The sync service: ``start``/``stop`` it with the other background services."""

    name = "jonot-sync"

    def __init__(self, store: Store, settings: Settings,
                 client: CloudClient | None = None,
                 rng: Callable[[], float] = random.random) -> None:
        self.store = store
        self.settings = settings
        self.client = client or CloudClient(settings.cloud_url, settings.cloud_token,
                                            settings.sync_timeout_s)
        self._rng = rng
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_prune = 0.0
        self.pushes = 0  # successful pushes, for tests and benchmarks

    # -- service ------------------------------------------------------------------------

    def start(self) -> None:
        """Start both threads. A freeze recorded by an earlier run is lifted: after an
        admin re-enrolled this office the cloud takes it again, else it freezes it anew."""
        outbox.install(self.store)
        with self.store.write() as tx:
            tx.execute("UPDATE sync_state SET frozen_at = NULL, frozen_message = NULL "
                       "WHERE id = 1 AND frozen_at IS NOT NULL")
        if self.wake not in self.store.listeners:
            self.store.listeners.append(self.wake)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._guard, args=(self._push_loop,),
                             name="jonot-sync-push", daemon=True),
            threading.Thread(target=self._guard, args=(self._pull_loop,),
                             name="jonot-sync-actions", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        push, pull = self._threads or (None, None)
        if push is not None:
            push.join(max(0.0, deadline - time.monotonic()))
        if pull is not None:
            # It may be inside a long poll, which has no local effect until it answers:
            # a short wait, then it ends with the process (a daemon thread).
            pull.join(max(0.0, min(1.0, deadline - time.monotonic())))
        if self.wake in self.store.listeners:
            self.store.listeners.remove(self.wake)

    def wake(self, events: list[dict[str, Any]] | None = None) -> None:
        """Something was committed: push soon (a store listener; never blocks)."""
        self._wake.set()

    def _guard(self, loop: Callable[[], None]) -> None:
        while not self._stop.is_set():
            try:
                loop()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("sync worker failed; starting again in 5 s")
                self._stop.wait(5.0)

    def _backoff(self) -> Backoff:
        return Backoff(self.settings.sync_backoff_min_s, self.settings.sync_backoff_max_s,
                       rng=self._rng)

    # -- pushing ----------------------------------------------------------------------------

    def _read_batch(self) -> tuple[dict[str, Any], list[str]]:
        with self.store.read() as tx:
            st = tx.one("SELECT acked_seq, last_applied_cmd_seq, frozen_at FROM sync_state "
                        "WHERE id = 1")
            ident = outbox.identity(tx)
            head = tx.one("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
            entries = _batch_entries(tx, st["acked_seq"])
            oldest = tx.one("SELECT MIN(seq) AS s FROM outbox")["s"]
        meta = {"acked_seq": st["acked_seq"], "applied": st["last_applied_cmd_seq"],
                "frozen": bool(st["frozen_at"]), "install_id": ident["install_id"],
                "epoch_id": ident["epoch_id"], "head_seq": head["seq"] if head else 0,
                "oldest": oldest}
        return meta, entries

    def push_once(self, batch: tuple[dict[str, Any], list[str]] | None = None
                  ) -> dict[str, Any]:
        """One push of the next batch (possibly empty) and what its answer changed.

        Raises ``CloudError``; the error is recorded for the status first.
        """
        meta, entries = batch or self._read_batch()
        head = json.dumps({"install_id": meta["install_id"], "epoch_id": meta["epoch_id"],
                           "head_seq": meta["head_seq"], "applied_cmd_through": meta["applied"],
                           "office_time": utcnow_iso()}, separators=(",", ":"))
        body = f'{head[:-1]},"entries":[{",".join(entries)}]}}'.encode()
        sent = time.time()
        try:
            answer = self.client.request("POST", f"{PREFIX}/push", body)
        except CloudError as exc:
            self._record_error(str(exc), exc)
            raise
        received = time.time()
        self._handle_answer(meta, entries, answer, (sent + received) / 2)
        self.pushes += 1
        return {"sent": len(entries), "acked_seq": answer.get("acked_seq"),
                "action": answer.get("action")}

    def _handle_answer(self, meta: dict[str, Any], entries: list[str],
                       answer: dict[str, Any], local_mid: float) -> None:
        action = answer.get("action", "ok")
        acked = answer.get("acked_seq")
        max_numbers = answer.get("max_numbers") or {}
        skew = None
        if isinstance(answer.get("cloud_time"), str):
            try:
                skew = round(parse_iso(answer["cloud_time"]).timestamp() - local_mid, 3)
            except ValueError:
                skew = None
        now = utcnow_iso()
        with self.store.write() as tx:
            if outbox.identity(tx)["epoch_id"] != meta["epoch_id"]:
                return  # the epoch changed meanwhile: this answer is about the old one
            if action == "frozen":
                self._freeze(str(answer.get("message") or ""), tx, skew)
                return
            if action == "rotate" or not isinstance(acked, int) or acked > meta["head_seq"] \
                    or (meta["oldest"] is not None and acked < meta["oldest"] - 1):
                # The cloud has seen another history of this epoch, or needs entries
                # that are no longer kept: start over with a full snapshot.
                outbox.start_epoch(tx, {str(k): int(v) for k, v in max_numbers.items()})
                log.warning("sync: new epoch (%s)", answer.get("message") or action)
            else:
                tx.execute("UPDATE sync_state SET acked_seq = ? WHERE id = 1", (acked,))
                # Numbers the cloud saw were issued here, maybe in an epoch this database
                # no longer remembers (restored from an older backup): never reuse them.
                for queue_id, number in max_numbers.items():
                    tx.execute("UPDATE queues SET last_number = ? WHERE id = ? "
                               "AND last_number < ?", (int(number), str(queue_id), int(number)))
            tx.execute("UPDATE sync_state SET last_ok_at = ?, last_error = NULL, "
                       "last_error_at = NULL, last_error_code = NULL, "
                       "clock_skew_s = COALESCE(?, clock_skew_s) WHERE id = 1", (now, skew))

    def _freeze(self, message: str, tx: Tx | None = None, skew: float | None = None) -> None:
        """Stop pushing and pulling and show the cloud's alert (until the next start)."""
        message = message or ("the cloud froze this office: another installation uses the "
                              "same identity; re-enrol one of them")
        if tx is None:
            with self.store.write() as tx:
                self._freeze(message, tx, skew)
            self._wake.set()
            return
        tx.execute("UPDATE sync_state SET frozen_at = ?, frozen_message = ?, "
                   "clock_skew_s = COALESCE(?, clock_skew_s) WHERE id = 1 AND frozen_at IS NULL",
                   (utcnow_iso(), message, skew))
        log.error("sync frozen: %s", message)

    def _record_error(self, message: str, exc: CloudError | None = None) -> None:
        code = (exc.code or ("unauthorized" if exc.status == 401 else "forbidden")) \
            if exc is not None and exc.refused else None
        try:
            with self.store.write() as tx:
                tx.execute("UPDATE sync_state SET last_error = ?, last_error_at = ?, "
                           "last_error_code = ? WHERE id = 1", (message, utcnow_iso(), code))
        except Exception:  # the store may be closing; the log still has it
            log.debug("could not record the sync error", exc_info=True)

    def _push_loop(self) -> None:
        backoff = self._backoff()
        last_push = float("-inf")
        heartbeat = self.settings.sync_heartbeat_s
        while not self._stop.is_set():
            self._wake.clear()
            meta, entries = self._read_batch()
            if meta["frozen"]:
                self._stop.wait(heartbeat)
                continue
            idle = time.monotonic() - last_push
            if not entries and idle < heartbeat:
                if self._wake.wait(heartbeat - idle) and not self._stop.is_set():
                    self._stop.wait(self.settings.sync_debounce_s)
                continue
            try:
                result = self.push_once((meta, entries))
            except CloudError as exc:
                # A refused token does not heal by itself (a new one needs a restart):
                # try again only now and then.
                delay = BACKOFF_MAX_S if exc.refused else backoff.next(exc.retry_after)
                log.warning("sync push failed: %s; next try in %.1f s", exc, delay)
                self._stop.wait(delay)
                continue
            backoff.reset()
            last_push = time.monotonic()
            if entries and result["action"] == "ok" and result["acked_seq"] == meta["acked_seq"]:
                # Sent entries, none taken (the cloud wants something else first): wait
                # as after a failure, never spin.
                self._record_error("the cloud took none of the entries pushed "
                                   f"(it stays at {meta['acked_seq']})")
                self._stop.wait(backoff.next())
            self._maybe_prune()

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = time.monotonic()
        with self.store.write() as tx:
            pruned = outbox.prune(tx, self.settings.sync_retention_days * 86_400, utcnow_iso())
        if pruned:
            log.info("sync: pruned %d acknowledged outbox entries", pruned)

    # -- pulling actions --------------------------------------------------------------------

    def pull_once(self, wait: float = MAX_WAIT_S) -> int:
        """One long poll and the actions it brought applied; how many were new."""
        with self.store.read() as tx:
            after = tx.one("SELECT last_applied_cmd_seq FROM sync_state WHERE id = 1")[0]
            install_id = outbox.identity(tx)["install_id"]
        query = urllib.parse.urlencode({"after": after, "wait": int(wait),
                                        "install_id": install_id})
        answer = self.client.request("GET", f"{PREFIX}/actions?{query}",
                                     timeout=self.client.timeout + wait)
        if answer.get("frozen"):
            self._freeze(str(answer.get("message") or ""))
            return 0
        actions = answer.get("actions") or []
        applied = 0
        for action in sorted(actions, key=lambda a: int(a.get("cmd_seq", 0))):
            if self._stop.is_set():
                break
            try:
                outcome = apply_action(self.store, action)
            except CommandGap:
                break
            except (KeyError, TypeError, ValueError):
                log.error("sync: malformed action from the cloud: %r", action)
                break
            if not outcome.duplicate:
                applied += 1
        if applied:
            self._wake.set()
        return applied

    def _pull_loop(self) -> None:
        backoff = self._backoff()
        while not self._stop.is_set():
            with self.store.read() as tx:
                st = tx.one("SELECT frozen_at FROM sync_state WHERE id = 1")
            if st["frozen_at"]:
                self._stop.wait(self.settings.sync_heartbeat_s)
                continue
            started = time.monotonic()
            try:
                applied = self.pull_once()
            except CloudError as exc:
                delay = BACKOFF_MAX_S if exc.refused else backoff.next(exc.retry_after)
                log.info("sync actions: %s; next try in %.1f s", exc, delay)
                self._stop.wait(delay)
                continue
            backoff.reset()
            if not applied and time.monotonic() - started < 1.0:
                self._stop.wait(1.0)  # a cloud that does not hold the poll: no busy loop
