"""Alert webhook: JSON POSTs sent from a background thread, retried, never blocking the caller.

``send`` only puts the payload on a bounded queue (dropping it, with a warning, when the queue
is full). One daemon thread per notifier posts each payload with a timeout and retries
transient failures (connection errors, timeouts, 429 and 5xx) with a doubling back-off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

QUEUE_SIZE = 100
_STOP = object()


def post_json(url: str, payload: Mapping[str, Any], timeout: float) -> int:
    """POST one JSON document; return the HTTP status (raises on network errors)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "thumbcache-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def is_retryable(status: int) -> bool:
    """Whether a response status is worth another attempt."""
    return status == 429 or status >= 500


class WebhookNotifier:
    """Posts alert payloads to one URL from a background thread."""

    def __init__(
        self,
        url: str,
        *,
        retries: int = 3,
        timeout: float = 5.0,
        backoff_seconds: float = 0.5,
        post: Callable[[str, Mapping[str, Any], float], int] = post_json,
    ) -> None:
        self.url = url
        self._retries = retries
        self._timeout = timeout
        self._backoff = backoff_seconds
        self._post = post
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_SIZE)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0
        self.given_up = 0

    def send(self, payload: Mapping[str, Any]) -> bool:
        """Queue one payload for delivery; False (and a warning) if the queue is full."""
        self._ensure_thread()
        try:
            self._queue.put_nowait(dict(payload))
        except queue.Full:
            log.warning("alert webhook queue full: dropped %s", payload.get("alert_id"))
            return False
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until every queued payload was delivered or given up; False on timeout."""
        q = self._queue
        with q.all_tasks_done:
            return q.all_tasks_done.wait_for(lambda: not q.unfinished_tasks, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout``), then stop the thread."""
        self.flush(timeout)
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)
            thread.join(timeout=1.0)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(
                    target=self._run, name="thumbcache-alert-webhook", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, dict)
                self._deliver(item)
            finally:
                self._queue.task_done()

    def _deliver(self, payload: dict[str, Any]) -> None:
        alert_id = payload.get("alert_id")
        for attempt in range(self._retries + 1):
            if attempt and self._stopping.wait(self._backoff * 2 ** (attempt - 1)):
                break
            try:
                status = self._post(self.url, payload, self._timeout)
            except Exception as exc:  # network errors of any kind are transient here
                log.warning("alert webhook %s attempt %d failed: %s", alert_id, attempt + 1, exc)
                continue
            if 200 <= status < 300:
                self.delivered += 1
                return
            log.warning("alert webhook %s attempt %d: HTTP %d", alert_id, attempt + 1, status)
            if not is_retryable(status):
                break
        self.given_up += 1
        log.error("alert webhook gave up on %s after %d attempts", alert_id, attempt + 1)


_notifiers: dict[tuple[str, int, float], WebhookNotifier] = {}
_notifiers_lock = threading.Lock()


def shared_notifier(url: str, retries: int, timeout: float) -> WebhookNotifier:
    """One notifier (and thread) per process and configuration, for long-running workers."""
    key = (url, retries, timeout)
    with _notifiers_lock:
        notifier = _notifiers.get(key)
        if notifier is None:
            notifier = _notifiers[key] = WebhookNotifier(url, retries=retries, timeout=timeout)
        return notifier
