"""htmx templates and static files (package data)."""
