"""Cache folders: choosing one per collection, laying out rendition paths, writing atomically."""
