"""Live streams (Server-Sent Events)."""
