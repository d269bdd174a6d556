"""Object bodies → field-level diffs and snapshots, redacted before anything else sees them."""
