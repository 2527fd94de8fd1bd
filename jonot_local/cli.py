"""The ``jonot-local`` command line.

Expected failures (bad arguments, a name taken, a missing file, a folder that
cannot be read or written) print one line ``jonot-local: error: …`` on stderr
and exit with status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .settings import Settings

EXIT_USAGE = 2


class JonotGroup(click.Group):
    """A click group whose errors are one line and exit status 2."""

    def main(self, args: Any = None, prog_name: str | None = None,  # type: ignore[override]
             **extra: Any) -> Any:
        extra.pop("standalone_mode", None)
        try:
            return super().main(args=args, prog_name=prog_name or "jonot-local",
                                standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:
            # A group without its command: show the help (as click does), status 2.
            click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message(), err=True)
            sys.exit(EXIT_USAGE)
        except click.Abort:
            click.echo("jonot-local: aborted", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as exc:
            _fail(exc.format_message())
        # The file system and the database file can refuse any command at any step
        # (read-only or full disk, a path under a regular file, /proc): one line.
        except OSError as exc:
            from .backup import os_reason

            _fail(os_reason(exc))
        except sqlite3.Error as exc:
            _fail(f"the database could not be used: {exc}")


def _fail(message: str) -> NoReturn:
    click.echo(f"jonot-local: error: {_one_line(message)}", err=True)
    sys.exit(EXIT_USAGE)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def data_dir_option(fn: Any) -> Any:
    return click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Folder holding the database, secret key and backups "
             "(default: JONOT_DATA_DIR, else the platform's user data dir).")(fn)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn domain and backup errors into one-line ``click.ClickException``s."""
    from .backup import BackupError
    from .db import NoDatabase
    from .domain.errors import DomainError

    try:
        yield
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    except (BackupError, NoDatabase) as exc:
        raise click.ClickException(str(exc)) from None


def print_settings(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """Eager ``--help-settings``: list every setting, then exit."""
    if not value or ctx.resilient_parsing:
        return
    _echo_settings(None)
    ctx.exit()


def _echo_settings(current: Settings | None) -> None:
    for env_name, default, help_text in Settings.describe():
        line = f"{env_name}  (default: {default})"
        if current is not None:
            value = current.shown(env_name.removeprefix("JONOT_").lower())
            if value != default:
                line += f"  now: {value}"
        click.echo(line)
        click.echo(f"    {help_text}")


def load_settings(data_dir: Path | None, **overrides: Any) -> Settings:
    """Settings from the environment and options; a bad value becomes one CLI line."""
    try:
        return Settings.load({"data_dir": data_dir, **overrides})
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("jonot-local", cls=JonotGroup,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jonot-local")
def main() -> None:
    """Jonot Local: an offline-first queue management system for one office."""


@main.command()
@data_dir_option
@click.option("--host", default=None,
              help="Address to listen on (default: JONOT_HOST, else 0.0.0.0: all interfaces, "
                   "for the LAN).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="TCP port (default: JONOT_PORT, else 8080; 0 picks a free one).")
@click.option("--demo", is_flag=True, help="Fill an empty database with demo queues, desks, "
              "a display and a demo admin login.")
@click.option("--no-zeroconf", is_flag=True, help="Do not announce the server on the LAN.")
@click.option("--printer", default=None,
              help="Kiosk receipt printer, e.g. tcp://192.0.2.10:9100 or usb://VID:PID "
                   "(default: JONOT_PRINTER).")
@click.option("--help-settings", is_flag=True, expose_value=False, is_eager=True,
              callback=print_settings,
              help="List every setting with its environment variable and default, and exit.")
def serve(data_dir: Path | None, host: str | None, port: int | None, demo: bool,
          no_zeroconf: bool, printer: str | None) -> None:
    """Run the office server (waitress) until interrupted."""
    from .server import exec_with_malloc_tuned

    exec_with_malloc_tuned()  # first: on glibc, without per-thread malloc caches
    from .api.errors import available_pages
    from .app import create_app, sync_enabled
    from .backup import BackupService, DataDirLock, os_reason
    from .server import make_server, run_until_signal
    from .services import Services

    settings = load_settings(data_dir, host=host, port=port, printer=printer)
    host, port = settings.host, settings.port  # the port's range is checked by Settings
    # First, so that whoever reads this knows which data the server (and any
    # other command given the same --data-dir) uses.
    click.echo(f"Jonot Local {__version__}, data dir {os.path.abspath(settings.data_dir)}")
    sys.stdout.flush()
    lock = DataDirLock(settings.data_dir)
    try:
        with cli_errors():
            lock.acquire()  # held until this process ends: restore refuses meanwhile
        app = create_app(settings)
    except ValueError as exc:  # a setting only create_app can check (the printer's)
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot open the data dir {settings.data_dir}: {os_reason(exc)}") from None
    demo_login = None
    if demo:
        from .demo import load_demo

        with cli_errors():
            demo_login = load_demo(app.extensions["jonot"].store)
    try:
        server = make_server(app, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") \
            from None
    services = Services(app)
    if settings.backup_interval_s > 0:
        services.add(BackupService(settings.data_dir, settings.backup_interval_s,
                                   settings.backup_keep))
    if not no_zeroconf:
        from .lan.announce import announcer_for

        services.add(announcer_for(app, host, server.effective_port))
    else:
        from .lan.announce import DiscoveryOff

        app.extensions["jonot"].discovery = DiscoveryOff("turned off (--no-zeroconf)")
    if app.extensions["jonot"].printing is not None:
        services.add(app.extensions["jonot"].printing)
    if sync_enabled(settings):
        from .sync.worker import SyncWorker

        services.add(SyncWorker(app.extensions["jonot"].store, settings))
    services.start()
    every_interface = host in ("0.0.0.0", "::", "")  # noqa: S104
    shown = "localhost" if every_interface else host
    base = f"http://{shown}:{server.effective_port}"
    # Only pages this server really has; the API is always there.
    for label, path in [*available_pages(app), ("API docs", "/api/v1/docs"),
                        ("OpenAPI", "/api/v1/openapi.json"), ("Health", "/api/v1/health")]:
        click.echo(f"  {label:<8} {base}{path}")
    if every_interface:
        _echo_lan_addresses(server.effective_port)
    if demo_login:
        click.echo(f"  Demo login: {demo_login[0]} / {demo_login[1]}")
    elif demo:
        click.echo("  Demo login: none made (an admin account existed already; "
                   "see jonot-local user list / user passwd)")
    elif not _has_admin(app):
        click.echo("  No admin account yet. Create the first one (in another terminal):")
        click.echo("    jonot-local user add NAME --admin --data-dir "
                   f"{_quoted(os.path.abspath(settings.data_dir))}")
    sys.stdout.flush()
    try:
        run_until_signal(server, on_stop=services.stop)
    finally:
        lock.release()


def _echo_lan_addresses(port: int) -> None:
    """The addresses kiosks, displays and phones on the LAN would use."""
    from .addresses import lan_ipv4_addresses

    found = lan_ipv4_addresses()
    if not found:
        click.echo("  On the LAN: none (this machine has only its loopback address; "
                   "connect it to the office network)")
        return
    click.echo("  On the LAN (for kiosks, displays and phones):")
    for address in found:
        click.echo(f"           http://{address}:{port}/")


def _has_admin(app: Any) -> bool:
    from .domain import users

    with app.extensions["jonot"].store.read() as tx:
        return any(u["role"] == "admin" for u in users.list_users(tx))


def _quoted(path: Path | str) -> str:
    import shlex

    return shlex.quote(str(path))


# -- the desk window ---------------------------------------------------------------------

@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder where the window keeps the chosen server (desk.json) and the "
                   "staff session (desk-window/) (default: JONOT_DATA_DIR, else the "
                   "platform's user data dir).")
@click.option("--server", "server_url", default=None, metavar="URL",
              help="The office server, e.g. http://192.168.1.20:8080 (default: the one "
                   "found on the LAN by zeroconf, or the one chosen before).")
def desk(data_dir: Path | None, server_url: str | None) -> None:
    """Open the desk page in a window, finding the office server on the LAN."""
    try:
        import webview  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(f"the desk window needs pywebview ({exc}); "
                                   'pip install "jonot-local[desk]"') from None
    from .lan.deskapp import run_desk

    settings = load_settings(data_dir)
    interfaces = [a.strip() for a in settings.mdns_interfaces.split(",") if a.strip()]
    try:
        run_desk(server_url, interfaces or None, settings.data_dir)
    except Exception as exc:  # no GUI toolkit, no display
        if type(exc).__name__ == "WebViewException":
            raise click.ClickException(f"cannot open the desk window: {exc}") from None
        raise


# -- settings --------------------------------------------------------------------------

@main.command("settings")
@data_dir_option
def settings_cmd(data_dir: Path | None) -> None:
    """List every setting: environment variable, default, help (and the value now)."""
    _echo_settings(load_settings(data_dir))


# -- staff accounts ----------------------------------------------------------------------

@main.group()
def user() -> None:
    """Staff and admin accounts: add, list, change a password."""


def _open_store(data_dir: Path | None, read_only: bool = False) -> Any:
    """The data dir's database, one connection.

    Created and migrated if needed, unless ``read_only``: then a missing database
    is a one-line error naming the data dir, and nothing is written.
    """
    from .backup import os_reason
    from .db import open_store

    settings = load_settings(data_dir)
    try:
        with cli_errors():
            return open_store(Path(settings.data_dir), pool_size=1, read_only=read_only)
    except OSError as exc:
        raise click.ClickException(
            f"cannot open the data dir {settings.data_dir}: {os_reason(exc)}") from None
    except sqlite3.Error as exc:
        raise click.ClickException(
            f"cannot open the database in {settings.data_dir}: {exc}") from None


def stdin_is_tty() -> bool:
    """True when a person can be asked for a password."""
    return sys.stdin is not None and sys.stdin.isatty()


def _password(given: str | None) -> str:
    if given is not None:
        return given
    if not stdin_is_tty():
        raise click.UsageError("--password is required when input is not a terminal")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user.command("add")
@data_dir_option
@click.argument("name")
@click.option("--password", default=None,
              help="The new account's password (at least 8 characters); asked for if omitted.")
@click.option("--admin", is_flag=True, help="Make an admin (may set up queues, desks, staff).")
def user_add(data_dir: Path | None, name: str, password: str | None, admin: bool) -> None:
    """Create a staff account, or an admin account with --admin."""
    from .domain import users

    password = _password(password)  # asked before the write transaction begins
    with cli_errors():  # and hashed before it, too: hashing is slow on purpose
        hashed = users.hash_password(password, load_settings(data_dir).password_hash_method)
    store = _open_store(data_dir)
    try:
        with cli_errors(), store.write() as tx:
            created = users.create_user(tx, name, hashed, role="admin" if admin else "staff")
    finally:
        store.close()
    click.echo(f"Created {created['role']} {created['username']} in {store.path.parent}")


@user.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def user_list(data_dir: Path | None, as_json: bool) -> None:
    """List the accounts: name, role, active, created."""
    from .domain import users

    store = _open_store(data_dir, read_only=True)
    try:
        with store.read() as tx:
            accounts = users.list_users(tx)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(accounts, indent=2))
        return
    where = store.path.parent
    if not accounts:
        click.echo(f"No accounts in {where} yet. Create the first admin with:")
        click.echo(f"  jonot-local user add NAME --admin --data-dir {_quoted(where)}")
        return
    click.echo(f"Accounts in {where}:")
    rows = [("USERNAME", "ROLE", "ACTIVE", "CREATED")] + [
        (a["username"], a["role"], "yes" if a["active"] else "no", a["created_at"])
        for a in accounts]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])


@user.command("passwd")
@data_dir_option
@click.argument("name")
@click.option("--password", default=None,
              help="The new password (at least 8 characters); asked for if omitted.")
def user_passwd(data_dir: Path | None, name: str, password: str | None) -> None:
    """Change an account's password; its API tokens stop working."""
    from .domain import users

    password = _password(password)  # asked before the write transaction begins
    with cli_errors():  # and hashed before it, too: hashing is slow on purpose
        hashed = users.hash_password(password, load_settings(data_dir).password_hash_method)
    store = _open_store(data_dir)
    try:
        with cli_errors(), store.write() as tx:
            users.set_password(tx, name, hashed)
    finally:
        store.close()
    click.echo(f"Password changed for {name} in {store.path.parent}")


# -- backup and restore ------------------------------------------------------------------

@main.command()
@data_dir_option
@click.argument("file", required=False, type=click.Path(path_type=Path))
def backup(data_dir: Path | None, file: Path | None) -> None:
    """Copy the database to FILE while the server keeps running.

    Without FILE the copy goes to <data-dir>/backups/jonot-YYYYmmdd-HHMMSS.sqlite3
    (UTC); when FILE is a folder, into that folder under the same name. The copy
    is checked before its path is printed.
    """
    from .backup import backup_database, backups_dir, database_path, new_backup_path

    settings = load_settings(data_dir)
    data = Path(settings.data_dir)
    if file is None:
        dest = new_backup_path(backups_dir(data))
    elif file.is_dir():
        dest = new_backup_path(file)
    else:
        dest = file
    with cli_errors():
        path = backup_database(database_path(data), dest)
    click.echo(str(path))


@main.command()
@data_dir_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--other-location", is_flag=True,
              help="Restore a backup of another location (office), replacing this one's "
                   "location id, accounts and tickets.")
def restore(data_dir: Path | None, file: Path, other_location: bool) -> None:
    """Replace the database with the backup FILE (the server must be stopped).

    The current database is kept as <data-dir>/backups/pre-restore-….sqlite3.
    A backup of another location is refused unless --other-location is given.
    """
    from .backup import os_reason, restore_database

    settings = load_settings(data_dir)
    try:
        with cli_errors():
            result = restore_database(Path(settings.data_dir), file,
                                      other_location=other_location)
    except OSError as exc:
        raise click.ClickException(
            f"cannot restore into {settings.data_dir}: {os_reason(exc)}") from None
    click.echo(f"Restored {file} into {result.database}")
    if result.previous is not None:
        click.echo(f"The replaced database was kept as {result.previous}")
    if result.numbers_advanced:
        click.echo("Ticket numbers issued after this backup are unknown here, so the "
                   "counters move ahead (no number is shown twice): " + ", ".join(
                       f"{q} {a}→{b}" for q, (a, b) in sorted(result.numbers_advanced.items())))


# -- the cloud instance (SPEC §8, §10) -------------------------------------------------------

def _database_url_option(fn: Any) -> Any:
    return click.option(
        "--database-url", default=None,
        help="postgresql://… to use PostgreSQL (default: JONOT_CLOUD_DATABASE_URL, else "
             "SQLite in the data dir).")(fn)


def _open_cloud_store(data_dir: Path | None, database_url: str | None) -> Any:
    from .sync.cloud.store import TransientError, open_cloud_store

    settings = load_settings(data_dir, cloud_database_url=database_url)
    try:
        return open_cloud_store(Path(settings.data_dir), settings.cloud_database_url)
    except (ValueError, TransientError, RuntimeError) as exc:
        raise click.ClickException(f"cannot open the cloud database: {exc}") from None


@main.group()
def cloud() -> None:
    """Run and manage the cloud instance offices sync with."""


@cloud.command("serve")
@data_dir_option
@_database_url_option
@click.option("--host", default=None, help="Address to listen on (default: JONOT_HOST).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="TCP port (default: JONOT_PORT, else 8080; 0 picks a free one).")
def cloud_serve(data_dir: Path | None, database_url: str | None, host: str | None,
                port: int | None) -> None:
    """Run the cloud instance (waitress) until interrupted."""
    from .server import make_server, run_until_signal
    from .sync.cloud import create_cloud_app
    from .sync.cloud.store import TransientError

    settings = load_settings(data_dir, host=host, port=port, cloud_database_url=database_url)
    try:
        app = create_cloud_app(settings)
    except (ValueError, TransientError, RuntimeError) as exc:
        raise click.ClickException(f"cannot open the cloud database: {exc}") from None
    rt = app.extensions["jonot_cloud"]
    try:
        server = make_server(app, settings.host, settings.port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    click.echo(f"Jonot Local {__version__} cloud, database {rt.store.description}")
    shown = "localhost" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    click.echo(f"  API      http://{shown}:{server.effective_port}/api/v1/health")
    sys.stdout.flush()
    run_until_signal(server, on_stop=rt.close)


@cloud.group("office")
def cloud_office() -> None:
    """Offices registered in the cloud: add, list, revoke."""


@cloud_office.command("add")
@data_dir_option
@_database_url_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print {\"office_id\", \"token\"} as JSON.")
def cloud_office_add(data_dir: Path | None, database_url: str | None, name: str,
                     as_json: bool) -> None:
    """Register an office; prints its id and its token (shown only this once)."""
    from .sync.cloud.offices import add_office

    store = _open_cloud_store(data_dir, database_url)
    try:
        office_id, token = add_office(store, name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"office_id": office_id, "token": token}))
    else:
        click.echo(f"office_id {office_id}")
        click.echo(f"token     {token}")
        click.echo("Set JONOT_CLOUD_TOKEN to this token on the office (it is not shown again).")


@cloud_office.command("list")
@data_dir_option
@_database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the offices as JSON.")
def cloud_office_list(data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """Every office with its status, last push and measured clock skew."""
    from .sync.cloud.offices import list_offices

    store = _open_cloud_store(data_dir, database_url)
    try:
        rows = list_offices(store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['office_id']}  {r['status']:<8} {r['name']}  last push "
                   f"{r['last_push_at'] or 'never'}  acked {r['acked_seq'] or 0}"
                   + (f"  skew {r['clock_skew_s']:+.0f} s" if r["clock_skew_s"] is not None
                      else "")
                   + (f"  ALERT: {r['alert']}" if r["alert"] else ""))


@cloud_office.command("reenrol")
@data_dir_option
@_database_url_option
@click.argument("office_id")
@click.option("--json", "as_json", is_flag=True, help="Print {\"office_id\", \"token\"} as JSON.")
def cloud_office_reenrol(data_dir: Path | None, database_url: str | None, office_id: str,
                         as_json: bool) -> None:
    """A new token for the office (lifts a freeze; the old token stops working)."""
    from .sync.cloud.offices import UnknownOffice, reenrol_office

    store = _open_cloud_store(data_dir, database_url)
    try:
        token = reenrol_office(store, office_id)
    except UnknownOffice:
        raise click.ClickException(f"no office has the id {office_id}") from None
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"office_id": office_id, "token": token}))
    else:
        click.echo(f"token     {token}")
        click.echo("Give it to the one install that should sync (JONOT_CLOUD_TOKEN).")


@cloud_office.command("revoke")
@data_dir_option
@_database_url_option
@click.argument("office_id")
def cloud_office_revoke(data_dir: Path | None, database_url: str | None, office_id: str) -> None:
    """Refuse the office's token from now on."""
    from .sync.cloud.offices import UnknownOffice, revoke_office

    store = _open_cloud_store(data_dir, database_url)
    try:
        revoke_office(store, office_id)
    except UnknownOffice:
        raise click.ClickException(f"no office has the id {office_id}") from None
    finally:
        store.close()
    click.echo(f"Revoked office {office_id}")


# -- cloud sync (office side) ----------------------------------------------------------------

@main.group("sync")
def sync_group() -> None:
    """This office's sync with the cloud."""


@sync_group.command("status")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def sync_status_cmd(data_dir: Path | None, as_json: bool) -> None:
    """Show the sync state: online/offline, last push, backlog, last error, clock skew.

    Reads the database only; works while the server runs.
    """
    import json

    from .app import sync_enabled
    from .sync.worker import sync_status

    settings = load_settings(data_dir)
    store = _open_store(data_dir, read_only=True)
    try:
        with store.read() as tx:
            status = sync_status(tx, sync_enabled(settings), settings.sync_heartbeat_s)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(status))
        return
    where = settings.cloud_url or "no cloud set (JONOT_CLOUD_URL, JONOT_CLOUD_TOKEN)"
    skew = status["clock_skew_s"]
    click.echo(f"Sync:       {status['state']} ({where})")
    click.echo(f"Last push:  {status['last_push_ok_at'] or 'never'}")
    click.echo(f"Backlog:    {status['backlog']} change(s) not yet in the cloud")
    click.echo(f"Last error: {status['last_error'] or 'none'}")
    click.echo("Clock skew: " + ("unknown" if skew is None else
                                 f"{skew:+.1f} s (cloud minus this computer)"))
    click.echo(f"Epoch:      {status['epoch_id'] or 'none yet'}")


if __name__ == "__main__":  # pragma: no cover
    main()
