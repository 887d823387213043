"""thumbcache control: the ``thumbcache`` command, the embedded runner, maintenance tasks."""
