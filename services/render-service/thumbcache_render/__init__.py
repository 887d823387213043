"""thumbcache render-service: the render stage of one or more renditions as a Dramatiq worker.

thumbnail-service and cache-service are this same code, each bound to its rendition by
configuration (``thumbcache worker thumbnail`` sets ``worker.renditions``)."""
