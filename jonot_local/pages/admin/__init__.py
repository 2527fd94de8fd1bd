"""The admin pages, ``/admin/…`` (admin accounts only): queues, desks, displays, devices,
staff, settings, equipment and system. One module per concern; each view is a thin
adapter over the domain functions the JSON API uses, and answers a page, or the
section alone to htmx (``common.render``)."""

from . import devices, people, setup, system  # noqa: F401  (routes register on import)
