"""Make the display's chime: a soft two-tone "ding-dong" (E5 then C5), written as a WAV.

Run ``python displays/tools/make_chime.py`` to remake ``displays/static/chime.wav``.
Pure standard library (``wave``, ``math``): each tone is a sine with two quiet
overtones and a bell-like envelope (5 ms attack, exponential decay), so it is
pleasant on a TV speaker and never clips. Mono, 11.025 kHz, 16-bit; about 1.5 s.
"""

from __future__ import annotations

import math
import struct
import sys
import wave
from pathlib import Path

RATE = 11025  # the highest overtone is under 2 kHz: plenty, and half the bytes
TONES = ((659.25, 0.0), (523.25, 0.55))  # (frequency Hz, start s): E5, then C5
LENGTH_S = 1.6
PEAK = 0.45  # of full scale, summed tones included


def sample(t: float) -> float:
    """The chime's amplitude at ``t`` seconds (-1..1)."""
    total = 0.0
    for freq, start in TONES:
        dt = t - start
        if dt < 0:
            continue
        attack = min(1.0, dt / 0.005)
        envelope = attack * math.exp(-dt * 3.2)
        tone = (math.sin(2 * math.pi * freq * dt)
                + 0.25 * math.sin(2 * math.pi * 2 * freq * dt) * math.exp(-dt * 4)
                + 0.08 * math.sin(2 * math.pi * 3 * freq * dt) * math.exp(-dt * 6))
        total += envelope * tone / 1.33
    fade = min(1.0, (LENGTH_S - t) / 0.1)  # no click at the very end
    return PEAK * total * max(0.0, fade)


def write(path: Path) -> None:
    frames = bytearray()
    for i in range(int(RATE * LENGTH_S)):
        value = max(-1.0, min(1.0, sample(i / RATE)))
        frames += struct.pack("<h", int(value * 32767))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(frames))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else (
        Path(__file__).resolve().parent.parent / "static" / "chime.wav")
    write(target)
    print(f"wrote {target} ({target.stat().st_size} bytes)")
