"""MongoDB job state: one repository per collection, plus the pure rules in :mod:`.model`."""
