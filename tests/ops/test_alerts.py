"""Alerts: the rules, raising once and resolving, the webhook, the CLI, on real servers."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dramatiq
import pytest
from prometheus_client import REGISTRY
from thumbcache.broker import make_broker
from thumbcache.contracts import RenderRequest, all_queues, render_message
from thumbcache.ops.alerts import (
    DEAD_LETTERS,
    FAILURE_RATIO,
    FOLDER_HIGH_WATER,
    STALLED,
    evaluate_alerts,
    evaluate_rules,
    on_job_finished,
)
from thumbcache.ops.dead_letters import dead_letter_depths, handle_dead_letters
from thumbcache.ops.webhook import WebhookNotifier
from thumbcache.renditions import DEFAULT_RENDITIONS, THUMBNAIL
from thumbcache.settings import OpsSettings, Settings, load_settings
from thumbcache.state.store import Store, connect
from thumbcache_control import cli

from tests.pipeline_helpers import drain, folder_of, make_runtime

pytestmark = pytest.mark.integration

RAISED = "thumbcache_alerts_raised_total"
OPS = OpsSettings(alert_failure_ratio=0.2, alert_min_images=10, stalled_after_seconds=900)
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)

QUEUES = all_queues(DEFAULT_RENDITIONS.values())


def job(job_id: str = "j1", **fields: object) -> dict[str, object]:
    return {"_id": job_id, "status": "running", "completed": 0, "skipped": 0, "failed": 0,
            "last_progress_at": NOW, **fields}  # fmt: skip


# --- the rules, pure -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completed", "skipped", "failed", "fires"),
    [
        (8, 0, 2, True),  # exactly the threshold, with exactly the minimum of images
        (9, 0, 1, False),  # below the threshold
        (0, 0, 9, False),  # every image failed, but too few to judge yet
        (0, 30, 10, True),  # skipped images count as processed
    ],
)
def test_the_failure_ratio_rule_needs_enough_images_and_the_threshold(
    completed: int, skipped: int, failed: int, fires: bool
) -> None:
    found = evaluate_rules(
        OPS, NOW, jobs=[job(completed=completed, skipped=skipped, failed=failed)]
    )
    assert [c.kind for c in found.candidates] == ([FAILURE_RATIO] if fires else [])
    assert found.checked == {"j1:failure_ratio", "j1:stalled"}


def test_a_job_is_stalled_when_marked_or_idle_too_long_but_never_once_done() -> None:
    idle = NOW - dt.timedelta(seconds=901)
    cases = {
        "fresh": job("fresh", last_progress_at=NOW - dt.timedelta(seconds=899)),
        "idle": job("idle", last_progress_at=idle),
        "marked": job("marked", status="stalled"),
        "done": job("done", status="done", last_progress_at=idle),
        "naive": job("naive", last_progress_at=idle.replace(tzinfo=None)),
    }
    found = evaluate_rules(OPS, NOW, jobs=cases.values())
    assert sorted(c.subject for c in found.candidates) == ["idle", "marked", "naive"]
    idle_alert = next(c for c in found.candidates if c.subject == "idle")
    assert idle_alert.kind == STALLED and idle_alert.job_id == "idle"
    assert idle_alert.details["idle_seconds"] == 901 and "901 s" in idle_alert.message


def test_folders_alert_at_their_high_water_mark_and_only_with_a_capacity() -> None:
    folders = [
        {"_id": "full", "capacity_bytes": 1000, "high_water": 0.9, "current_size_bytes": 900},
        {"_id": "roomy", "capacity_bytes": 1000, "high_water": 0.9, "current_size_bytes": 899},
        {"_id": "unbounded", "capacity_bytes": None, "current_size_bytes": 10**12},
    ]
    found = evaluate_rules(OPS, NOW, folders=folders, dead_letter_depths={"cache.XQ": 3,
                                                                         "scan.XQ": 0})  # fmt: skip
    assert {c.alert_id for c in found.candidates} == {
        "full:folder_high_water",
        "cache.XQ:dead_letters",
    }
    assert "full:folder_high_water" in found.checked and "scan.XQ:dead_letters" in found.checked
    assert not any(c.job_id for c in found.candidates)


# --- the webhook -----------------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server: HookServer = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(server.delay)
        server.attempts.append(body)
        failing = len(server.attempts) <= server.fail_first
        self.send_response(500 if failing else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class HookServer(ThreadingHTTPServer):
    attempts: list[dict[str, object]]
    fail_first = 1
    delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def hook() -> Iterator[HookServer]:
    """A local webhook receiver that answers 500 to the first attempt, then 204."""
    server = HookServer(("127.0.0.1", 0), _Hook)
    server.attempts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_webhook_is_retried_after_a_failure_and_delivered(hook: HookServer) -> None:
    notifier = WebhookNotifier(hook.url, retries=2, timeout=2, backoff_seconds=0.01)
    assert notifier.send({"alert_id": "j1:stalled", "message": "m"})
    assert notifier.flush(timeout=10)
    notifier.close()
    assert [a["alert_id"] for a in hook.attempts] == ["j1:stalled", "j1:stalled"]
    assert (notifier.delivered, notifier.given_up) == (1, 0)


def test_the_webhook_never_blocks_the_caller_and_gives_up_after_its_retries(
    hook: HookServer,
) -> None:
    hook.fail_first, hook.delay = 100, 0.3
    notifier = WebhookNotifier(hook.url, retries=1, timeout=5, backoff_seconds=0.01)
    started = time.monotonic()
    for n in range(3):
        notifier.send({"alert_id": f"a{n}"})
    assert time.monotonic() - started < 0.1  # three slow, failing deliveries cost nothing here
    assert notifier.flush(timeout=10)
    notifier.close()
    assert len(hook.attempts) == 6 and notifier.given_up == 3


# --- raising, deduplicating, resolving, on the MongoDB-protocol server -----------------------


@pytest.fixture
def store(mongo_url: str, db_name: str) -> Store:
    return connect(mongo_url, db_name)


def settings_for(mongo_url: str, db_name: str, **env: str) -> Settings:
    return load_settings(
        files=[],
        env={f"THUMBCACHE_{k.upper()}": v for k, v in env.items()},
        overrides={"mongo_url": mongo_url, "database": db_name},
    )


def make_job(store: Store, job_id: str) -> None:
    store.jobs.create(
        job_id, "c1", "/photos", force=False, recipes={}, stages=("thumbnail", "cache")
    )


def test_a_stalled_job_alerts_once_then_resolves_then_alerts_again(
    store: Store, mongo_url: str, db_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(mongo_url, db_name, ops__stalled_after_seconds="60")
    make_job(store, "job-a")
    sent: list[dict[str, object]] = []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)  # the fault: no progress for 5 min
    counted = REGISTRY.get_sample_value(RAISED, {"kind": "stalled"}) or 0.0

    with caplog.at_level(logging.ERROR, logger="thumbcache.ops.alerts"):
        first = evaluate_alerts(store, settings=settings, notify=sent.append, clock=lambda: later)
        second = evaluate_alerts(store, settings=settings, notify=sent.append, clock=lambda: later)
    assert [a["_id"] for a in first.raised] == ["job-a:stalled"]
    assert second.raised == () and second.active == ("job-a:stalled",)
    assert [r.levelname for r in caplog.records] == ["ERROR"]  # one line, not one per pass
    assert [s["alert_id"] for s in sent] == ["job-a:stalled"]
    assert REGISTRY.get_sample_value(RAISED, {"kind": "stalled"}) == counted + 1
    doc = store.alerts.get("job-a:stalled")
    assert doc is not None
    assert (doc["job_id"], doc["kind"], doc["active"], doc["acknowledged"]) == (
        "job-a", "stalled", True, False)  # fmt: skip

    store.db["jobs"].update_one(  # the repair: the job moves again
        {"_id": "job-a"},
        {"$inc": {"completed": 1}, "$set": {"last_progress_at": dt.datetime.now(dt.UTC)}},
    )
    third = evaluate_alerts(store, settings=settings, notify=sent.append)
    assert third.resolved == ("job-a:stalled",) and third.active == ()
    assert store.alerts.get("job-a:stalled")["active"] is False  # type: ignore[index]

    store.alerts.acknowledge("job-a:stalled")
    much_later = later + dt.timedelta(minutes=10)
    fourth = evaluate_alerts(store, settings=settings, notify=sent.append, clock=lambda: much_later)
    (again,) = fourth.raised
    assert (again["occurrences"], again["acknowledged"], again["active"]) == (2, False, True)
    assert len(sent) == 2


def test_of_racing_evaluations_exactly_one_raises(store: Store) -> None:
    repo = store.alerts
    barrier = threading.Barrier(6)
    results: list[object] = []

    def race() -> None:
        barrier.wait()
        results.append(repo.raise_alert("job-r:stalled", {"kind": STALLED, "message": "m"}))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1


def test_an_evaluation_resolves_only_what_it_checked(
    store: Store, mongo_url: str, db_name: str
) -> None:
    settings = settings_for(mongo_url, db_name)
    repo = store.alerts
    repo.raise_alert("thumbnail.XQ:dead_letters", {"kind": DEAD_LETTERS, "message": "m"})
    evaluate_alerts(store, settings=settings, notify=lambda _: None)  # no broker: not checked
    assert repo.active_ids() == {"thumbnail.XQ:dead_letters"}


def test_a_folder_over_its_high_water_mark_alerts_until_it_drains(
    store: Store, mongo_url: str, db_name: str, tmp_path
) -> None:
    settings = settings_for(mongo_url, db_name)
    (folder,) = store.folders.register((str(tmp_path / "cache"),))
    store.db["cache_folders"].update_one({"_id": folder["_id"]}, {"$set": {"capacity_bytes": 1000}})
    store.folders.add(folder["_id"], files=10, size_bytes=950)  # the fault: 95 % full

    raised = evaluate_alerts(store, settings=settings, notify=lambda _: None).raised
    assert [(a["_id"], a["kind"]) for a in raised] == [
        (f"{folder['_id']}:folder_high_water", FOLDER_HIGH_WATER)
    ]
    assert "95%" in raised[0]["message"]

    store.folders.set_stats(folder["_id"], files=5, size_bytes=500)  # the repair: cleaned up
    resolved = evaluate_alerts(store, settings=settings, notify=lambda _: None).resolved
    assert resolved == (f"{folder['_id']}:folder_high_water",)


def test_a_job_finishing_with_many_failures_alerts_through_the_webhook(
    tmp_path, mongo_url: str, db_name: str, hook: HookServer
) -> None:
    rt = make_runtime(
        tmp_path, mongo_url, db_name, ops__alert_min_images="4", ops__alert_webhook_url=hook.url
    )
    root = folder_of(tmp_path, 3)
    for n in range(3):  # the fault: half of the collection is not images at all
        (root / f"broken{n}.jpg").write_bytes(b"not a jpeg " * 50)
    from thumbcache.pipeline.scan import start_scan

    job_id = start_scan(rt, str(root))["_id"]
    drain(rt)  # the pipeline's own job-completion hook evaluates the rules
    finished = rt.store.jobs.get(job_id)
    assert finished is not None and finished["status"] == "done" and finished["failed"] == 3

    alert = rt.store.alerts.get(f"{job_id}:failure_ratio")
    assert alert is not None and alert["active"]
    assert "3 of 6 images failed" in alert["message"]
    deadline = time.monotonic() + 10
    while len(hook.attempts) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the webhook goes out from a background thread
    assert len(hook.attempts) == 2  # the first POST got a 500 and was retried
    assert hook.attempts[-1]["alert_id"] == alert["_id"]
    assert hook.attempts[-1]["details"] == {"failed": 3, "processed": 6, "ratio": 0.5}

    notifier = WebhookNotifier(hook.url, retries=3, timeout=2, backoff_seconds=0.01)
    again = on_job_finished(rt.store, finished, rt.settings, notify=notifier.send)
    notifier.close(timeout=10)
    assert again is not None and again.raised == ()  # the hook may run twice: no repeat
    assert len(hook.attempts) == 2


def test_the_job_hook_never_raises_into_the_pipeline(
    store: Store, mongo_url: str, db_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(mongo_url, db_name, ops__alert_min_images="1")

    def broken_notify(_: object) -> None:
        raise OSError("no route")

    failed_job = job("j9", status="done", failed=1)
    assert on_job_finished(store, failed_job, settings, notify=broken_notify) is None
    assert "alert evaluation for finished job j9 failed" in caplog.text


def test_the_status_service_reads_these_alerts(store: Store, mongo_url: str, db_name: str) -> None:
    from thumbcache_status.reader import StatusReader
    from thumbcache_status.views import alert_view

    settings = settings_for(mongo_url, db_name, ops__stalled_after_seconds="60")
    for job_id in ("job-a", "job-b"):
        make_job(store, job_id)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    evaluate_alerts(store, settings=settings, notify=lambda _: None, clock=lambda: later)
    store.alerts.acknowledge("job-a:stalled")

    reader = StatusReader(store)
    first = reader.alerts(limit=1, after=None)
    rest = reader.alerts(limit=1, after=first.next_key)
    views = [alert_view(a) for a in first.docs + rest.docs]
    assert [(v["alert_id"], v["job_id"], v["kind"]) for v in views] == [
        ("job-b:stalled", "job-b", "stalled"),
        ("job-a:stalled", "job-a", "stalled"),
    ]
    assert isinstance(views[0]["raised_at"], str) and views[1]["acknowledged"] is True
    assert reader.open_alerts() == 1


# --- dead-letter queues on RabbitMQ, and the commands ----------------------------------------


def dead_letter_directly(broker: dramatiq.Broker, queue: str = "thumbnail") -> str:
    """Put one render message straight into a dead-letter queue, as Dramatiq would."""
    message = render_message(THUMBNAIL, RenderRequest("job-x", "c1", "img-1", "a.jpg"))
    broker.declare_queue(queue, ensure=True)
    broker.channel.basic_publish(  # type: ignore[attr-defined]
        exchange="", routing_key=f"{queue}.XQ", body=message.encode()
    )
    return message.message_id


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, mongo_url: str, db_name: str, amqp_url: str) -> None:
    """``thumbcache`` configured by environment as the CronJob is, with these commands on."""
    for name in [n for n in os.environ if n.startswith("THUMBCACHE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("THUMBCACHE_MONGO_URL", mongo_url)
    monkeypatch.setenv("THUMBCACHE_DATABASE", db_name)
    monkeypatch.setenv("THUMBCACHE_BROKER_URL", amqp_url)


def test_a_dead_letter_alerts_via_check_alerts_and_the_alert_clears_after_a_requeue(
    cli_env: None,
    mongo_url: str,
    db_name: str,
    amqp_url: str,
    hook: HookServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("THUMBCACHE_OPS__ALERT_WEBHOOK_URL", hook.url)
    settings = settings_for(mongo_url, db_name, broker_url=amqp_url)
    broker = make_broker(settings)
    store = connect(mongo_url, db_name)
    try:
        message_id = dead_letter_directly(broker)

        assert cli.main(["check-alerts", "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["raised"] == ["thumbnail.XQ:dead_letters"]
        assert summary["dead_letters_recorded"] == 1
        assert store.db["dead_letters"].find_one({"_id": message_id})["job_id"] == "job-x"  # type: ignore[index]
        assert [a["alert_id"] for a in hook.attempts] == ["thumbnail.XQ:dead_letters"] * 2
        assert dead_letter_depths(broker, QUEUES)["thumbnail.XQ"] == 1  # recording lost nothing

        assert cli.main(["check-alerts", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["raised"] == []  # still true: not raised again

        handle_dead_letters(broker, store.dead_letters, queues=QUEUES, requeue=True)  # the repair
        assert cli.main(["check-alerts", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["resolved"] == ["thumbnail.XQ:dead_letters"]

        assert cli.main(["alerts", "--json", "--all"]) == 0
        (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert (line["alert_id"], line["active"], line["acknowledged"]) == (
            "thumbnail.XQ:dead_letters", False, False)  # fmt: skip
        assert cli.main(["alerts", "--ack", "thumbnail.XQ:dead_letters"]) == 0
        assert cli.main(["alerts", "--ack", "no-such:alert"]) == 1
        capsys.readouterr()
        assert cli.main(["alerts", "--json"]) == 0  # resolved and acknowledged: settled
        assert capsys.readouterr().out == ""
    finally:
        broker.close()
