#!/bin/sh
# What the browser and speech tests need, installed from Debian when missing (CI is a fresh
# machine, as root): chromium (the browser tests) and espeak-ng (the display's server-made
# announcements, tests/test_display_speech.py).
set -e
# Test workers may call this at the same moment: the first installs, the others wait
# for it here (apt takes one install at a time) and then find nothing missing.
exec 9>"${TMPDIR:-/tmp}/jonot-ensure-chromium.lock"
flock 9
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v espeak-ng >/dev/null 2>&1 || missing="$missing espeak-ng"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_chromium: missing:$missing; run: sudo apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq $missing >/dev/null
test -x /usr/bin/chromium
command -v espeak-ng >/dev/null
