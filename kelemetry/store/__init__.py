"""The embedded store: spans and known objects in one SQLite file, and the webhook's inbox."""
