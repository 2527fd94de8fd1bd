"""Kiosk receipt printing: ESC/POS receipts sent off the request path.

``receipt`` builds the bytes, ``printer`` opens ``tcp://`` and ``usb://``
printers with timeouts, ``worker`` runs the bounded print queue in one named
daemon thread and keeps each printer's state.
"""

from .printer import PrinterError, parse_uri
from .receipt import Receipt, build_receipt
from .worker import PrintService

__all__ = ["PrintService", "PrinterError", "Receipt", "build_receipt", "parse_uri"]
