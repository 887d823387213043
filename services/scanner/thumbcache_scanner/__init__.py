"""thumbcache scanner: the scan stage as a Dramatiq worker."""
