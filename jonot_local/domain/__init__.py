"""The domain: ticket rules as plain functions over the database, no HTTP inside."""
