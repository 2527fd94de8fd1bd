#!/bin/sh
# Install Jonot Local as a systemd service on Debian/Ubuntu (run as root).
#
#   sudo installer/linux/install.sh [SOURCE]      SOURCE: this repository (default) or a .whl
#
# It makes /opt/jonot-local (a virtual environment with the program), the system user
# jonot-local, the service (data in /var/lib/jonot-local), the desk window's menu entry
# and the udev rule for USB receipt printers, then starts the server. Running it again
# upgrades the program and keeps the data. PREFIX, UNIT_DIR, APPS_DIR, UDEV_DIR and
# SYSTEMCTL can be set to install elsewhere (used by the tests).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SOURCE=${1:-$REPO}
PREFIX=${PREFIX:-/opt/jonot-local}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
APPS_DIR=${APPS_DIR:-/usr/share/applications}
UDEV_DIR=${UDEV_DIR:-/etc/udev/rules.d}
SYSTEMCTL=${SYSTEMCTL:-systemctl}
SERVICE_USER=jonot-local
PYTHON=${PYTHON:-python3}

say() { printf '%s\n' "jonot-local install: $*"; }

if [ "$(id -u)" -ne 0 ] && [ -z "${JONOT_INSTALL_AS_USER:-}" ]; then
    say "run me as root (sudo $0)" >&2
    exit 2
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    say "needs Python 3.11 or newer ($PYTHON is older); apt-get install python3 python3-venv" >&2
    exit 2
}

say "program into $PREFIX"
[ -x "$PREFIX/bin/python" ] || "$PYTHON" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --upgrade "$SOURCE"

if [ -z "${JONOT_INSTALL_AS_USER:-}" ]; then
    if ! id "$SERVICE_USER" >/dev/null 2>&1; then
        say "system user $SERVICE_USER"
        useradd --system --home-dir /var/lib/jonot-local --no-create-home \
            --shell /usr/sbin/nologin --groups lp "$SERVICE_USER"
    fi
fi

say "service, menu entry, printer rule"
install -d "$UNIT_DIR" "$APPS_DIR" "$UDEV_DIR"
sed "s|/opt/jonot-local/|$PREFIX/|g" "$REPO/installer/jonot-local.service" \
    > "$UNIT_DIR/jonot-local.service"
sed "s|/opt/jonot-local/|$PREFIX/|g" "$HERE/jonot-local-desk.desktop" \
    > "$APPS_DIR/jonot-local-desk.desktop"
install -m 0644 "$HERE/60-jonot-local-printer.rules" "$UDEV_DIR/"

if [ -d /run/systemd/system ] && [ -z "${JONOT_INSTALL_AS_USER:-}" ]; then
    if command -v udevadm >/dev/null; then
        udevadm control --reload || say "udev rules not reloaded; replug the USB printer"
    fi
    $SYSTEMCTL daemon-reload
    $SYSTEMCTL enable --now jonot-local
    $SYSTEMCTL restart jonot-local  # an upgrade runs the new program
    say "running: systemctl status jonot-local; log: journalctl -u jonot-local -f"
else
    say "systemd is not running here: start it later with systemctl enable --now jonot-local"
fi
say "first admin: sudo -u $SERVICE_USER JONOT_DATA_DIR=/var/lib/jonot-local $PREFIX/bin/jonot-local user add NAME --admin"
if ! command -v espeak-ng >/dev/null 2>&1; then
    say "note: TVs without a voice of their own announce calls with the chime alone until"
    say "      espeak-ng is installed on this PC: apt-get install espeak-ng (then restart the service)"
fi
