"""The ``jonot-local`` command line.

Expected failures (bad arguments, a name taken, a missing file) print one line
``jonot-local: error: …`` on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .settings import Settings

EXIT_USAGE = 2


class JonotGroup(click.Group):
    """A click group whose errors are one line and exit status 2."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        extra.pop("standalone_mode", None)
        try:
            return super().main(args=args, prog_name=prog_name or "jonot-local",
                                standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("jonot-local: aborted", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            click.echo(f"jonot-local: error: {_one_line(exc.format_message())}", err=True)
            sys.exit(EXIT_USAGE)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def data_dir_option(fn: Any) -> Any:
    return click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        envvar="JONOT_DATA_DIR", show_envvar=True,
        help="Folder holding the database, secret key and backups "
             "(default: the platform's user data dir).")(fn)


def load_settings(data_dir: Path | None, **overrides: Any) -> Settings:
    """Settings from the environment and options; a bad value becomes one CLI line."""
    try:
        return Settings.load({"data_dir": data_dir, **overrides})
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(cls=JonotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jonot-local")
def main() -> None:
    """Jonot Local: an offline-first queue management system for one office."""


@main.command()
@data_dir_option
@click.option("--host", default="0.0.0.0", show_default=True,  # noqa: S104 - LAN server
              help="Address to listen on (all interfaces by default, for the LAN).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="TCP port (0 picks a free one).")
@click.option("--demo", is_flag=True, help="Fill an empty database with demo queues, desks, "
              "a display and a demo admin login.")
@click.option("--no-zeroconf", is_flag=True, help="Do not announce the server on the LAN.")
@click.option("--printer", default=None, envvar="JONOT_PRINTER", show_envvar=True,
              help="Kiosk receipt printer, e.g. tcp://192.0.2.10:9100 or usb://VID:PID.")
def serve(data_dir: Path | None, host: str, port: int, demo: bool, no_zeroconf: bool,
          printer: str | None) -> None:
    """Run the office server (waitress) until interrupted."""
    from .app import create_app
    from .server import make_server, run_until_signal
    from .services import Services

    settings = load_settings(data_dir)
    try:
        app = create_app(settings)
    except OSError as exc:
        raise click.ClickException(f"cannot open the data dir {settings.data_dir}: {exc}") \
            from None
    demo_login = None
    if demo:
        from .demo import load_demo

        demo_login = load_demo(app.extensions["jonot"].store)
    try:
        server = make_server(app, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") \
            from None
    services = Services(app)
    services.start()
    shown = "localhost" if host in ("0.0.0.0", "::") else host  # noqa: S104
    base = f"http://{shown}:{server.effective_port}"
    click.echo(f"Jonot Local {__version__} serving {settings.data_dir}")
    for label, path in (("Kiosk", "/kiosk"), ("Display", "/display"), ("Desk", "/desk"),
                        ("Admin", "/admin"), ("API", "/api/v1/health")):
        click.echo(f"  {label:<8} {base}{path}")
    if demo_login:
        click.echo(f"  Demo login: {demo_login[0]} / {demo_login[1]}")
    sys.stdout.flush()
    run_until_signal(server, on_stop=services.stop)


if __name__ == "__main__":  # pragma: no cover
    main()
