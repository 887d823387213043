"""thumbcache thumbnail-service: the thumbnail stage as a Dramatiq worker."""
