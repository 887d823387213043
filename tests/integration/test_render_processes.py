"""Renders run in child processes: a time limit that really stops C code, a memory ceiling, a
decoder crash that fails one image, and decoder chatter kept off the terminal."""

from __future__ import annotations

import io
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from thumbcache.errors import ImageTooLarge, RenderCrashed, RenderTimeout
from thumbcache.renditions import THUMBNAIL
from thumbcache.sandbox.pool import RenderPool
from thumbcache.sandbox.protocol import RenderTask
from thumbcache.settings import LimitSettings

from tests.imagegen import jpeg_bytes


def task(root: Path, source: str, limits: LimitSettings | None = None) -> RenderTask:
    return RenderTask(str(root), source, THUMBNAIL, limits or LimitSettings())


def big_png(path: Path, side: int, mode: str = "RGB") -> None:
    """A large, well-compressed PNG: quick to write, slow and big to decode."""
    y, x = np.mgrid[0:side, 0:side]
    channels = 4 if mode == "RGBA" else 3
    px = np.stack([(x + y * k) % 256 for k in range(1, channels + 1)], axis=-1).astype(np.uint8)
    Image.fromarray(px, mode).save(path, compress_level=1)


@pytest.fixture
def pool():
    pool = RenderPool(memory_mb=512)
    yield pool
    pool.close()


def test_a_render_process_returns_the_rendition_and_the_source_fingerprint(tmp_path, pool):
    # Given a JPEG in a collection
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(800, 600))
    # When a render process renders its thumbnail
    result = pool.render(task(tmp_path, "a.jpg"), time_limit=30)
    # Then the rendition fits the box, decodes, and carries the file's fingerprint
    assert (result.width, result.height) == (300, 225)
    with Image.open(io.BytesIO(result.data)) as im:
        assert im.size == (300, 225)
    st = os.stat(tmp_path / "a.jpg")
    assert result.fingerprint == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "crc": None}


def test_a_render_over_its_limit_is_stopped_in_c_code_and_the_process_replaced(tmp_path, pool):
    # Given a 36 MP PNG (a decode of well over a second) and a process that has rendered once
    big_png(tmp_path / "big.png", 6000)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(640, 480))
    pool.render(task(tmp_path, "a.jpg"), time_limit=30)
    (first,) = pool._idle
    # When the big image must render within 0.05 s
    started = time.monotonic()
    with pytest.raises(RenderTimeout, match=r"stopped after 0\.\d s, over the limit of 0\.05 s"):
        pool.render(task(tmp_path, "big.png"), time_limit=0.05)
    # Then the render stopped at once (the decoder was killed, not waited for)...
    assert time.monotonic() - started < 1.0
    assert not first.alive
    # ...and the next render gets a new process and succeeds
    result = pool.render(task(tmp_path, "a.jpg"), time_limit=30)
    assert result.width == 300
    (second,) = pool._idle
    assert second.pid != first.pid


def test_a_process_killed_mid_render_fails_that_render_as_crashed(tmp_path, monkeypatch):
    # Given render processes that spend 5 s in every render of "slow" sources
    monkeypatch.setenv("THUMBCACHE_FAULTS", "in_render_process=sleep:5@slow")
    (tmp_path / "slow.jpg").write_bytes(jpeg_bytes(640, 480))
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(640, 480))
    pool = RenderPool(memory_mb=512)
    pool.render(task(tmp_path, "a.jpg"), time_limit=30)
    (process,) = pool._idle
    errors: list[BaseException] = []

    def render_slow() -> None:
        try:
            pool.render(task(tmp_path, "slow.jpg"), time_limit=60)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=render_slow)
    thread.start()
    time.sleep(0.5)
    # When its process dies mid-render (as a segfaulting decoder would)
    os.kill(process.pid, signal.SIGSEGV)
    thread.join(30)
    # Then that render fails as RenderCrashed naming the signal, and the pool goes on
    (error,) = errors
    assert isinstance(error, RenderCrashed)
    assert "SIGSEGV" in str(error)
    assert pool.render(task(tmp_path, "a.jpg"), time_limit=30).width == 300
    pool.close()


def test_a_decode_over_the_memory_ceiling_fails_as_too_large_not_the_host(tmp_path):
    # Given a render process allowed 48 MB and a 4000x4000 RGBA PNG (64 MB of pixels)
    big_png(tmp_path / "wide.png", 4000, "RGBA")
    small = RenderPool(memory_mb=48)
    try:
        # When it renders
        with pytest.raises(ImageTooLarge):
            small.render(task(tmp_path, "wide.png"), time_limit=60)
        # Then it failed as too large; the same process renders the next image
        (tmp_path / "a.jpg").write_bytes(jpeg_bytes(640, 480))
        assert small.render(task(tmp_path, "a.jpg"), time_limit=30).width == 300
    finally:
        small.close()


def corrupt_exif_jpeg() -> bytes:
    """A JPEG whose EXIF names a description of 1000 bytes it does not hold."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHII", 0x010E, 2, 1000, 0x1000) + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = jpeg_bytes(640, 480)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def test_decoder_warnings_go_to_the_log_with_their_source(tmp_path, pool, caplog, capfd):
    # Given a JPEG whose EXIF block is damaged (Pillow warns while reading it)
    (tmp_path / "bad-exif.jpg").write_bytes(corrupt_exif_jpeg())
    # When it renders
    with caplog.at_level(logging.WARNING, logger="thumbcache.sandbox.pool"):
        result = pool.render(task(tmp_path, "bad-exif.jpg"), time_limit=30)
    # Then it rendered, the warning is in the log naming the source, and nothing reached stderr
    assert result.width == 300
    assert any("Skipping tag 270" in d for d in result.diagnostics), result.diagnostics
    (record,) = [r for r in caplog.records if "bad-exif.jpg" in r.getMessage()]
    assert "Skipping tag 270" in record.getMessage()
    assert capfd.readouterr().err == ""


def test_what_a_decoder_writes_to_stderr_is_captured_per_render():
    # Given the child's stderr capture, and C code (here: os.write) writing to file descriptor 2
    script = (
        "import os\n"
        "from thumbcache.sandbox.child import _StderrCapture\n"
        "capture = _StderrCapture()\n"
        "os.write(2, b'libjpeg: Corrupt JPEG data\\n')\n"
        "first = capture.take()\n"
        "second = capture.take()\n"
        "os.write(2, b'later\\n')\n"
        "print(first, second, capture.take(), flush=True)\n"
    )
    # When it runs
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    # Then each take() returns what was written since the last one, and the terminal saw nothing
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['libjpeg: Corrupt JPEG data'] [] ['later']"
    assert result.stderr == ""


def test_a_render_process_outlives_the_thread_that_started_it(tmp_path, pool):
    # Given a render process started by a thread that then ended (as Dramatiq's threads do)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(640, 480))
    thread = threading.Thread(target=pool.render, args=(task(tmp_path, "a.jpg"), 30))
    thread.start()
    thread.join()
    (process,) = pool._idle
    time.sleep(0.5)
    # When another thread renders
    result = pool.render(task(tmp_path, "a.jpg"), time_limit=30)
    # Then the same process served it: it was not killed with its first thread
    assert result.width == 300
    assert pool._idle == [process] and process.alive


def test_a_render_process_still_loading_its_libraries_dies_with_its_parent(tmp_path):
    # Given a worker whose render process loads its image libraries slowly (a cv2 that takes
    # a minute to import, first on the path), and the worker exits while it loads them
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "cv2.py").write_text("import time\ntime.sleep(60)\n")
    program = """if True:
        import os, sys
        from thumbcache.sandbox.pool import RenderPool
        RenderPool(memory_mb=504, size=1).warm(1)
        sys.stdin.readline()  # told to exit once its render process is loading
        os._exit(0)
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), *sys.path])}
    worker = subprocess.Popen([sys.executable, "-c", program], env=env, stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (children := render_children(504, parent=worker.pid)):
            assert time.monotonic() < deadline and worker.poll() is None, "no render process"
            time.sleep(0.05)
        time.sleep(0.5)  # past its start, into its imports
        worker.communicate(b"\n", timeout=60)
    finally:
        worker.kill()
    (child,) = children
    # Then the render process ends with it, within seconds, not after its imports
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process_alive(child):
        time.sleep(0.05)
    assert not process_alive(child)


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_one_task_returns_every_rendition_it_was_given_in_order(tmp_path, pool):
    from thumbcache.renditions import CACHE

    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(2400, 1600))
    both = RenderTask(str(tmp_path), "a.jpg", THUMBNAIL, LimitSettings(), also=(CACHE,))
    result = pool.render(both, 30)
    (cache,) = result.also
    assert (result.width, result.height) == (300, 200)
    assert (cache.width, cache.height) == (1620, 1080)
    assert Image.open(io.BytesIO(result.data)).size == (300, 200)
    assert Image.open(io.BytesIO(cache.data)).size == (1620, 1080)
    assert cache.fingerprint == result.fingerprint


def test_a_reply_whose_sizes_do_not_match_its_payload_is_refused():
    from thumbcache.sandbox.protocol import ProtocolError, result_from_json

    doc = {"width": 1, "height": 1, "format": "jpeg", "quality": 85, "source_quality": None,
           "fingerprint": {}, "also": [{"width": 2, "height": 2, "size": 10}]}  # fmt: skip
    with pytest.raises(ProtocolError):
        result_from_json(doc, b"12345")
    with pytest.raises(ProtocolError):
        result_from_json({**doc, "also": [{"size": -1}]}, b"12345")
    ok = result_from_json(doc, b"ab" + b"0123456789")
    assert ok.data == b"ab" and ok.also[0].data == b"0123456789" and ok.also[0].width == 2


def render_children(memory_mb: int, parent: int | None = None) -> set[int]:
    """PIDs of the render processes this test process (or ``parent``) runs with this memory
    ceiling (each test gives its pool its own, so processes of pools other tests warmed are not
    counted)."""
    me, ceiling = str(parent or os.getpid()).encode(), str(memory_mb).encode()
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"thumbcache.sandbox.child" in argv and me in argv and ceiling in argv:
            pids.add(int(entry))
    return pids


def test_warmed_processes_serve_the_first_renders_and_none_is_started_twice(tmp_path):
    # Given a pool of two warmed in the background
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(800, 600))
    pool = RenderPool(memory_mb=501, size=2)
    try:
        pool.warm(2)
        pool.warm(2)  # asked again while they start: still two
        # When two renders arrive at once, while the processes may still be starting
        results = []

        def render_one() -> None:
            results.append(pool.render(task(tmp_path, "a.jpg"), time_limit=30))

        threads = [threading.Thread(target=render_one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then they rendered in the two warmed processes: no render started a third
        assert [r.width for r in results] == [300, 300]
        started = render_children(501)
        assert len(started) == 2
        deadline = time.monotonic() + 30
        while pool._starting and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {p.pid for p in pool._idle} == started  # and both serve on
    finally:
        pool.close()


def test_a_closed_pool_is_not_warmed_and_a_process_warmed_late_is_closed(tmp_path):
    # Given a pool that is warming
    pool = RenderPool(memory_mb=502, size=1)
    pool.warm(1)
    # When it closes before the process is ready
    pool.close()
    pool.warm(1)  # and a closed pool is asked to warm
    # Then, once the start under way is over, no process stays behind
    deadline = time.monotonic() + 30
    while pool._starting and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool._starting == 0
    assert not render_children(502)
    assert pool._idle == []


def test_a_render_process_runs_one_thread_unless_the_user_sizes_openblas(tmp_path, monkeypatch):
    # Given an image, and no OPENBLAS_NUM_THREADS set
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(800, 600))
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    threads = {}
    for user_value in (None, "3"):
        if user_value:  # and then with the user's own value
            monkeypatch.setenv("OPENBLAS_NUM_THREADS", user_value)
        pool = RenderPool(memory_mb=503, size=1)
        try:
            # When a render process renders it
            pool.render(task(tmp_path, "a.jpg"), time_limit=30)
            (process,) = pool._idle
            environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
            threads[user_value] = len(os.listdir(f"/proc/{process.pid}/task"))
        finally:
            pool.close()
        # Then OpenBLAS (loaded with numpy, never called) is sized to one thread, or as asked
        assert f"OPENBLAS_NUM_THREADS={user_value or 1}".encode() in environ
    # and without it the process runs no thread besides its own: numpy started none per core
    assert threads[None] == 1
    assert threads["3"] > 1


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def test_a_render_process_reuses_freed_image_buffers_instead_of_faulting_them_in(tmp_path):
    # Given a 12 MP JPEG and a render process that has rendered it once
    (tmp_path / "big.jpg").write_bytes(jpeg_bytes(4000, 3000))
    pool = RenderPool(memory_mb=1024, size=1)
    try:
        pool.render(task(tmp_path, "big.jpg"), time_limit=60)
        (process,) = pool._idle
        # When it renders the same image twice more
        faults = minor_faults(process.pid)
        for _ in range(2):
            pool.render(task(tmp_path, "big.jpg"), time_limit=60)
        per_render = (minor_faults(process.pid) - faults) / 2
    finally:
        pool.close()
    # Then the decoded image (36 MB at full scale, 9 MB at 1/2) came from memory already mapped:
    # without the allocator's tuning every render faults in thousands of fresh pages
    assert per_render < 300, per_render


def test_a_task_with_outputs_is_written_by_the_render_process_and_no_bytes_come_back(
    tmp_path, pool
):
    from thumbcache.renditions import CACHE

    # Given a task whose two renditions have their files' paths (folders not yet made)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(2400, 1600))
    thumb, cache = tmp_path / "out" / "t" / "a.jpg", tmp_path / "out" / "c" / "a.jpg"
    both = RenderTask(str(tmp_path), "a.jpg", THUMBNAIL, LimitSettings(), also=(CACHE,),
                      outputs=(str(thumb), str(cache)))  # fmt: skip
    # When it renders
    result = pool.render(both, 30)
    # Then each file is in place, whole, and the reply holds only its facts
    expected = ((result, thumb, (300, 200)), (result.also[0], cache, (1620, 1080)))
    for rendered, path, size in expected:
        assert rendered.data == b"" and rendered.written == str(path)
        assert rendered.bytes == rendered.written_size == path.stat().st_size
        assert Image.open(path).size == size
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_an_output_that_cannot_be_written_fails_the_task_or_only_its_own_rendition(tmp_path, pool):
    from thumbcache.errors import StorageError
    from thumbcache.renditions import CACHE

    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(2400, 1600))
    (tmp_path / "blocked").write_text("a file where a folder should be")
    good, bad = str(tmp_path / "out" / "a.jpg"), str(tmp_path / "blocked" / "a.jpg")
    # When a companion's file cannot be written, the first is, and the companion says why
    task = RenderTask(str(tmp_path), "a.jpg", THUMBNAIL, LimitSettings(), also=(CACHE,),
                      outputs=(good, bad))  # fmt: skip
    result = pool.render(task, 30)
    assert result.written == good and os.path.isfile(good)
    (companion,) = result.also
    assert companion.written == "" and "cannot write" in companion.write_error
    # When the first rendition's file cannot be written, the task fails with the reason
    task = RenderTask(str(tmp_path), "a.jpg", THUMBNAIL, LimitSettings(), outputs=(bad,))
    with pytest.raises(StorageError, match="cannot write"):
        pool.render(task, 30)


def render_in_thread(
    pool: RenderPool, t: RenderTask, time_limit: float, out: list
) -> threading.Thread:
    def run() -> None:
        try:
            out.append(pool.render(t, time_limit=time_limit))
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def queue_behind_slow(pool: RenderPool, root: Path, slow_limit: float):
    """A slow render in ``pool``'s one process, and a quick one sent while it runs: the
    process, both threads, and the lists their outcomes go to."""
    (root / "slow.jpg").write_bytes(jpeg_bytes(640, 480))
    (root / "a.jpg").write_bytes(jpeg_bytes(800, 600))
    first: list = []
    second: list = []
    slow = render_in_thread(pool, task(root, "slow.jpg"), slow_limit, first)
    wait_for(lambda: len(pool._processes) == 1 and pool._processes[0].in_flight == 1)
    (process,) = pool._processes
    quick = render_in_thread(pool, task(root, "a.jpg"), 30, second)
    wait_for(lambda: process.in_flight == 2)  # sent at once: it waits in the process's pipe
    return process, (slow, first), (quick, second)


def test_a_task_waits_in_the_pipe_of_a_busy_process_instead_of_in_the_worker(tmp_path, monkeypatch):
    # Given a pool of one process and a render of 1 s in it
    monkeypatch.setenv("THUMBCACHE_FAULTS", "in_render_process=sleep:1@slow")
    pool = RenderPool(memory_mb=503, size=1)
    try:
        # When a second render comes while it runs, its task is sent to that same process
        # (queue_behind_slow waits for both to be in it)
        process, (slow, first), (quick, second) = queue_behind_slow(pool, tmp_path, 30)
        assert first == []  # the slow render is still going
        slow.join(30)
        quick.join(30)
        # Then both render, in order, in the one process
        assert [r.width for r in first + second] == [300, 300]
        assert pool._idle == [process]
        assert len(render_children(503)) == 1
    finally:
        pool.close()


@pytest.mark.parametrize("ending", ["crash", "timeout"])
def test_a_task_queued_behind_a_failing_render_is_rendered_by_another_process(
    tmp_path, monkeypatch, ending
):
    # Given a pool of one process rendering a 5 s task, with a second task queued behind it
    monkeypatch.setenv("THUMBCACHE_FAULTS", "in_render_process=sleep:5@slow")
    pool = RenderPool(memory_mb=504, size=1)
    try:
        limit = 0.5 if ending == "timeout" else 60
        process, (slow, first), (queued, second) = queue_behind_slow(pool, tmp_path, limit)
        # When the running render's process dies (a decoder crash) or is stopped at its limit
        if ending == "crash":
            os.kill(process.pid, signal.SIGSEGV)
        slow.join(30)
        queued.join(30)
        # Then that render fails as such, and the queued one, which never started, renders
        # in a new process as if nothing happened
        expected = RenderCrashed if ending == "crash" else RenderTimeout
        assert isinstance(first[0], expected), first
        assert [r.width for r in second] == [300]
        (replacement,) = pool._idle
        assert replacement.pid != process.pid and not process.alive
    finally:
        pool.close()
