"""On the LAN: announcing the server by zeroconf and finding it from a desk PC.

``announce`` runs inside ``serve`` (a background service); ``discover`` is the
plain logic of finding, choosing and remembering a server; ``deskapp`` puts
that logic in a pywebview window.
"""

SERVICE_TYPE = "_jonot._tcp.local."
