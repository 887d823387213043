"""Gunicorn settings of the status service; ``GUNICORN_CMD_ARGS`` or flags override any of them."""
# ruff: noqa: N999 - gunicorn looks for a file of exactly this name

import os

wsgi_app = "thumbcache_status.wsgi:build_app()"
bind = os.environ.get("THUMBCACHE_STATUS_BIND", "0.0.0.0:8080")
# Workers are processes: each builds its own MongoDB and broker clients after the fork.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Requests wait on the database, so a few threads per worker keep a worker busy.
worker_class = "gthread"
threads = int(os.environ.get("THUMBCACHE_STATUS_THREADS", "4"))
preload_app = False  # pymongo and pika clients must not cross a fork
timeout = 30
graceful_timeout = 30  # Kubernetes gives 40 s before SIGKILL
keepalive = 5
max_requests = 20_000
max_requests_jitter = 2_000
limit_request_line = 4094
limit_request_fields = 50
accesslog = "-"
errorlog = "-"
# No runtime-control socket (gunicorn >= 25.1): it would be written under $HOME, which is
# read-only in the container; older versions ignore this name.
control_socket_disable = True
