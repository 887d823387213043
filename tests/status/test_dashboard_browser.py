"""The dashboard in a real headless Chromium, during a real job.

Given the all-in-one service with its workers held back and a scan submitted over HTTP, when
the page is open and the workers run, paused halfway, then run to the end, then the page shows
the job at zero, part-way and finished (progress moves), groups its failure, fills the cache
folder, and the collection grid shows every thumbnail as a loaded image.

``THUMBCACHE_SCREENSHOT=docs/status-dashboard.png`` also saves the part-way view there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from thumbcache.settings import Settings
from thumbcache.state.store import Store
from thumbcache_control.http_server import BoundedWSGIServer
from thumbcache_control.serve import Embedded, embedded_service
from thumbcache_status.access import access_for

from tests.status.conftest import TOKEN, write_images

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
IMAGES = 36
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1100"]  # fmt: skip


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's Chromium through its chromedriver; Selenium Manager never downloads."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            pytest.fail(f"{path} is missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def service(fresh: tuple[Store, Settings], tmp_path: Path) -> Iterator[tuple[Embedded, str]]:
    """The all-in-one service on a free port, its worker not yet started, a render message
    per image (so that pausing the worker holds part of a job back)."""
    _, settings = fresh
    one_per_message = dataclasses.replace(settings.scan, render_batch=1)
    settings = dataclasses.replace(settings, scan=one_per_message)
    access = access_for(settings.status, TOKEN, ["127.0.0.1:0"])  # every read needs it too
    with embedded_service(
        settings, allowed_roots=(str(tmp_path),), access=access, start_worker=False
    ) as svc:
        httpd = BoundedWSGIServer(("127.0.0.1", 0), svc.app)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1})
        thread.start()
        try:
            yield svc, f"http://127.0.0.1:{httpd.server_port}"
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join()


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# Read in one script: the page redraws every tick, so element handles go stale between calls.
SHOWN = """
const card = document.querySelector(`.job[data-job-id="${arguments[0]}"]`);
if (!card) return null;
const bar = card.querySelector(".progress .bar");
return [card.dataset.status, Number(bar.dataset.done), Number(bar.dataset.total),
        card.querySelector(".rate b").textContent];
"""


def shown_progress(driver: webdriver.Chrome, job_id: str) -> tuple[str, int, int, str] | None:
    """(status, done, total, rate text) as the job's card shows them, or None before it shows."""
    shown = driver.execute_script(SHOWN, job_id)
    return None if shown is None else (str(shown[0]), int(shown[1]), int(shown[2]), str(shown[3]))


def test_progress_moves_and_thumbnails_appear(
    browser: webdriver.Chrome, service: tuple[Embedded, str], tmp_path: Path
) -> None:
    svc, url = service
    write_images(tmp_path / "holiday-photos", IMAGES, size=(1600, 1200))
    request = urllib.request.Request(
        f"{url}/v1/scans",
        data=json.dumps({"source": str(tmp_path / "holiday-photos")}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        job_id = json.load(resp)["job_id"]
    store = svc.runtime.store

    # The token in the fragment (never sent to the server); the page keeps it for the tab.
    browser.get(f"{url}/?refresh=250#token={TOKEN}")
    seen = [wait_until(lambda: shown_progress(browser, job_id), 20, "the job card")]
    assert seen[0][:2] == ("running", 0)

    svc.host.start()
    wait_until(lambda: _done(store, job_id) >= IMAGES // 3, 120, "some progress")
    svc.host.worker.pause()
    time.sleep(1.0)  # messages already taken finish; nothing new starts
    held = _done(store, job_id)
    part = wait_until(
        lambda: (p := shown_progress(browser, job_id)) and p[1] == held and p, 20, "the page"
    )
    seen.append(part)
    assert 0 < part[1] < part[2] == IMAGES + 1
    assert float(part[3]) > 0  # the rate
    wait_until(lambda: _loaded_thumbnails(browser) > 0, 20, "the first thumbnails")
    _screenshot(browser, tmp_path)

    svc.host.worker.resume()
    final = wait_until(
        lambda: (p := shown_progress(browser, job_id)) and p[0] == "done" and p, 120, "the end"
    )
    seen.append(final)
    assert [s[1] for s in seen] == sorted(s[1] for s in seen)
    assert seen[0][1] < seen[1][1] < seen[2][1] == IMAGES + 1

    wait_until(lambda: _loaded_thumbnails(browser) == IMAGES, 30, "every thumbnail")
    reasons = browser.execute_script(
        "return [...document.querySelectorAll('#failures .reason')].map((r) => r.dataset.reason)"
    )
    assert reasons == ["NotAnImage"]
    wait_until(
        lambda: f"{IMAGES * 2} files" in browser.find_element(By.ID, "folders").text,
        10,
        "the cache folder's files",
    )
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def _done(store: Store, job_id: str) -> int:
    job = store.jobs.get(job_id) or {}
    return int(job.get("completed", 0)) + int(job.get("skipped", 0)) + int(job.get("failed", 0))


def _loaded_thumbnails(driver: webdriver.Chrome) -> int:
    return int(
        driver.execute_script(
            "return [...document.querySelectorAll('#grid img.thumb')]"
            ".filter((i) => i.complete && i.naturalWidth > 0).length"
        )
    )


def _screenshot(driver: webdriver.Chrome, tmp_path: Path) -> None:
    driver.save_screenshot(str(tmp_path / "dashboard.png"))
    target = os.environ.get("THUMBCACHE_SCREENSHOT")
    if target:
        driver.save_screenshot(target)
