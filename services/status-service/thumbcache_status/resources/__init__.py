"""Falcon resources: each responder checks its parameters and delegates to the reader."""
