"""The work of each stage as plain functions over explicit dependencies (actors stay thin)."""
