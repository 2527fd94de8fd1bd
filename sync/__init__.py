"""Cloud sync: outbox, push/pull worker, cloud receiver."""
