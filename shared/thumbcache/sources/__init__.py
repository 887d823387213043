"""Collections on disk: source references, walking folders and archives, reading sources."""
