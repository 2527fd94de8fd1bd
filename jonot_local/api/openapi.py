"""The OpenAPI 3.1 document of /api/v1."""

from __future__ import annotations

from typing import Any


def build_document() -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "Jonot Local", "version": "1"}, "paths": {}}
