"""thumbcache cache-service: the cache stage as a Dramatiq worker."""
