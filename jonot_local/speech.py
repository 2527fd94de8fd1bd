"""Spoken announcements made by the office server, for displays whose browser has no voice.

A TV's browser speaks a call itself when it has a voice for the display's
language (``speechSynthesis``); many TVs and Chromium on a bare Linux have
none. For them the display fetches ``/display/speech/<code>.wav``: the server
reads the call itself ("A 42, Room 3" / "A 42, huone 3") with **espeak-ng**, a
small offline speech engine, and answers a WAV file. The text is always the
server's (the code of a ticket called in the last minutes and its desk), so
the door cannot be used to make speech of anything else.

Bounded everywhere: at most ``MAX_RUNNING`` espeak-ng processes at once (a
caller beyond waits briefly, then gets ``SpeechBusy``), each killed after
``RUN_TIMEOUT_S``; finished audio is kept in a small LRU cache (a recall, or a
second display, costs nothing); the per-client budget sits in the route.

Installing espeak-ng: Debian/Ubuntu ``apt-get install espeak-ng``; Fedora
``dnf install espeak-ng``; Windows: the ``espeak-ng.msi`` of the project's
GitHub releases, which installs ``C:\\Program Files\\eSpeak NG\\espeak-ng.exe``
(found there by itself); elsewhere set ``JONOT_ESPEAK`` to the program.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from xml.sax.saxutils import escape

RUN_TIMEOUT_S = 8.0     # one announcement is a second or two of audio: far less in practice
MAX_RUNNING = 2         # espeak-ng processes at once (the office PC has other work)
WAIT_FOR_SLOT_S = 3.0   # how long a request waits for a free slot before 503
CACHE_ENTRIES = 16      # WAV files kept (about 100-200 KB each): recalls, a few displays
WINDOWS_PATHS = (r"C:\Program Files\eSpeak NG\espeak-ng.exe",
                 r"C:\Program Files (x86)\eSpeak NG\espeak-ng.exe")
CODE_RE = re.compile(r"^(\D*?)0*(\d+)$")


class SpeechUnavailable(Exception):
    """No speech engine on this server (espeak-ng is not installed or not found)."""


class SpeechBusy(Exception):
    """Every speech slot is taken just now; try again in a moment."""


class SpeechFailed(Exception):
    """espeak-ng ran but made no audio (an unknown voice, a crash, a timeout)."""


def spoken_code(code: str) -> str:
    """How a ticket code is read out: its letters, then the number as a number.

    ``A042`` → ``A 42``, ``AB1042`` → ``A B 1042`` (never "zero four two").
    """
    match = CODE_RE.match(code or "")
    if not match:
        return code
    letters, number = match.group(1), match.group(2)
    return (" ".join(letters) + " " if letters else "") + number


def ssml(code: str, phrase: str, placeholder: str = "{code}") -> str:
    """The announcement as SSML: the code's letters read as letters ("A" as "ay", not the
    article), the rest as text. ``phrase`` holds ``placeholder`` where the code goes."""
    match = CODE_RE.match(code or "")
    if match:
        letters = match.group(1)
        spoken = ((f'<say-as interpret-as="characters">{escape(letters)}</say-as> '
                   if letters else "") + match.group(2))
    else:
        spoken = escape(code)
    head, _, tail = phrase.partition(placeholder)
    return f"<speak>{escape(head)}{spoken}{escape(tail)}</speak>"


def find_espeak(configured: str = "") -> str | None:
    """The espeak-ng program to run: ``configured`` (a path or a name on PATH), else
    ``espeak-ng`` or ``espeak`` on PATH, else Windows' default install folders."""
    if configured:
        found = shutil.which(configured)
        return found or (configured if Path(configured).is_file() else None)
    for name in ("espeak-ng", "espeak"):
        found = shutil.which(name)
        if found:
            return found
    if os.name == "nt":
        for path in WINDOWS_PATHS:
            if Path(path).is_file():
                return path
    return None


class SpeechService:
    """WAV files of announcements made by espeak-ng, bounded in processes, time and memory."""

    def __init__(self, program: str | None, timeout_s: float = RUN_TIMEOUT_S,
                 max_running: int = MAX_RUNNING, cache_entries: int = CACHE_ENTRIES) -> None:
        self.program = program
        self.timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(max_running)
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_entries = cache_entries
        self._lock = threading.Lock()
        self.made = 0      # espeak-ng runs that gave audio
        self.cached = 0    # answers served from the cache

    @property
    def available(self) -> bool:
        return self.program is not None

    def wav(self, markup: str, voice: str) -> bytes:
        """The WAV of ``markup`` (SSML, as ``ssml`` makes it) spoken with ``voice`` (``fi``).

        Raises ``SpeechUnavailable``, ``SpeechBusy`` or ``SpeechFailed``.
        """
        if self.program is None:
            raise SpeechUnavailable("espeak-ng is not installed on the office server")
        key = (voice, markup)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.cached += 1
                return hit
        if not self._slots.acquire(timeout=WAIT_FOR_SLOT_S):
            raise SpeechBusy("the server is making other announcements")
        try:
            audio = self._run(markup, voice)
        finally:
            self._slots.release()
        with self._lock:
            self._cache[key] = audio
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)
            self.made += 1
        return audio

    def _run(self, markup: str, voice: str) -> bytes:
        assert self.program is not None
        with tempfile.TemporaryDirectory(prefix="jonot-speech-") as tmp:
            out = Path(tmp) / "say.wav"
            # -w writes a file (its RIFF sizes filled in, unlike --stdout); -m: SSML
            cmd = [self.program, "-m", "-v", voice, "-s", "150", "-w", str(out), "--", markup]
            try:
                proc = subprocess.run(cmd, capture_output=True, timeout=self.timeout_s,
                                      check=False, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise SpeechFailed(f"espeak-ng took longer than {self.timeout_s:g} s") from None
            except OSError as exc:
                raise SpeechUnavailable(f"espeak-ng could not be started: {exc}") from None
            audio = out.read_bytes() if out.exists() else b""
        if proc.returncode != 0 or len(audio) <= 44:
            detail = proc.stderr.decode(errors="replace").strip().splitlines()
            raise SpeechFailed(detail[-1] if detail else f"espeak-ng exited {proc.returncode}")
        return audio
