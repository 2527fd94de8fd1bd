"""TV display pages and their assets (package data)."""
