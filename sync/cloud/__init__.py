"""The cloud instance: offices push their outbox here; patients follow tickets from anywhere."""

from .app import create_cloud_app

__all__ = ["create_cloud_app"]
