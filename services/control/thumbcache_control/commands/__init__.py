"""Operations subcommands of ``thumbcache``: one module each, registered by name in ``cli``.

Each module defines ``register(subparsers) -> None``, which adds its parser with
``set_defaults(handler=...)``; a handler takes ``(args, settings)`` and returns an exit code.
The work itself lives in ``thumbcache.ops`` (the shared library), so CronJobs, the CLI and
start-up hooks call the same functions.
"""
