"""Admin: the equipment and the system — LAN discovery, receipt printers (with a test
print) and cloud sync, read from what ``GET /api/v1/health`` and ``GET /api/v1/printers``
report; the test print is ``PrintService.test_print``, as ``POST /api/v1/printers/test``.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_babel import gettext
from werkzeug.wrappers import Response as BaseResponse

from ...api.printers import printers_json
from ...domain.errors import ValidationError
from ...domain.location import get_location
from ...lan.announce import discovery_status
from ...runtime import runtime
from .. import blueprint
from ..session import staff_page
from .common import refused, render


def _context() -> dict[str, Any]:
    from ...app import sync_enabled
    from ...sync.worker import sync_status

    rt = runtime()
    with rt.store.read() as tx:
        location = get_location(tx)
        sync = sync_status(tx, sync_enabled(rt.settings), rt.settings.sync_heartbeat_s)
    discovery = discovery_status(rt.discovery)
    port = request.host.rpartition(":")[2] if ":" in request.host else ""
    lan_urls = [f"http://{a}{':' + port if port else ''}/" for a in discovery["addresses"]]
    if discovery.get("host_name"):
        lan_urls.insert(0, f"http://{discovery['host_name'].rstrip('.')}"
                           f"{':' + port if port else ''}/")
    return {
        "version": current_app.config["JONOT_VERSION"], "location": location,
        "discovery": discovery, "lan_urls": lan_urls, "sync": sync,
        "cloud_url": rt.settings.cloud_url,
        "printers": printers_json(rt.printing) if rt.printing is not None else None,
        "test": None,
    }


@blueprint.get("/admin/system")
@staff_page("admin")
def admin_system() -> BaseResponse:
    """Discovery, printers and sync, as the server sees them now."""
    return render("system", _context())


@blueprint.post("/admin/system/test-print")
@staff_page("admin")
def admin_test_print() -> BaseResponse:
    """Print a test page on ``printer`` (blank: the default printer) and say how it went."""
    rt = runtime()
    uri = (request.form.get("printer") or "").strip() or None
    try:
        if rt.printing is None:  # pragma: no cover - create_app always makes one
            raise ValidationError.field("printer", "printing is not available")
        try:
            result = rt.printing.test_print(uri)
        except ValueError as exc:
            raise ValidationError.field("printer", str(exc)) from None
    except ValidationError as err:
        return refused("system", _context(), err, "test-print")
    if result["printed"]:
        notice = gettext("The test page was printed on %(uri)s.", uri=result["uri"])
        return render("system", {**_context(), "notice": notice, "test": result})
    banner = gettext("The test page did not print on %(uri)s: %(error)s", uri=result["uri"],
                     error=result["error"] or gettext("no answer"))
    return render("system", {**_context(), "banner": banner, "test": result,
                             "errors": {"test-print": {"printer": banner}}},
                  200)
