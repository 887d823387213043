"""Gunicorn settings of the status service; ``GUNICORN_CMD_ARGS`` or flags override any of them."""
# ruff: noqa: N999 - gunicorn looks for a file of exactly this name

import os

wsgi_app = "thumbcache_status.wsgi:build_app()"
# Loopback unless told otherwise: the images bind 0.0.0.0 explicitly (and need a token there).
bind = os.environ.get("THUMBCACHE_STATUS_BIND", "127.0.0.1:8080")
# Workers are processes: each builds its own MongoDB and broker clients after the fork.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Requests wait on the database, so a few threads per worker keep a worker busy.
worker_class = "gthread"
threads = int(os.environ.get("THUMBCACHE_STATUS_THREADS", "4"))
preload_app = False  # pymongo and pika clients must not cross a fork
# A worker silent this long is killed and replaced (a request stuck on the database).
timeout = 30
graceful_timeout = 30  # Kubernetes gives 40 s before SIGKILL
keepalive = 5  # idle keep-alive connections hold a thread for at most 5 s
max_requests = 20_000
max_requests_jitter = 2_000
limit_request_line = 4094
limit_request_fields = 50
accesslog = "-"
errorlog = "-"
# No runtime-control socket (gunicorn >= 25.1): it would be written under $HOME, which is
# read-only in the container; older versions ignore this name.
control_socket_disable = True


def on_starting(server):  # type: ignore[no-untyped-def]
    """Before any worker: refuse a token-less start beyond loopback, in one line, and tell the
    workers where the server listens (they check the Host header on loopback)."""
    from thumbcache.errors import ConfigError

    from thumbcache_status.wsgi import check_listen

    try:
        check_listen(server.cfg.bind)
    except ConfigError as exc:
        raise RuntimeError(str(exc)) from None  # gunicorn prints "Error: ..." and exits 1
