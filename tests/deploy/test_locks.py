"""The images' hashed locks match pyproject's extras, and hold only what each image loads."""

from __future__ import annotations

import copy
import importlib.util
import sys
from types import ModuleType

import pytest
from deploy_helpers import ROOT, SERVICES, dockerfile

IMAGE_OF_SERVICE = {
    "scanner": "scanner",
    "thumbnail-service": "render",
    "cache-service": "render",
    "status-service": "status",
    "control": "control",
}


def _lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_lock", ROOT / "deploy" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("deploy_lock", module)
    spec.loader.exec_module(module)
    return module


lock = _lock_module()


def _text(name: str) -> str:
    return (lock.LOCKS / f"{name}.txt").read_text()


@pytest.mark.parametrize("name", [*lock.IMAGE_EXTRAS, lock.BUILD])
def test_each_lock_was_compiled_from_todays_pyproject(name: str) -> None:
    assert lock.problems(lock.read_pyproject(), name, _text(name)) == []


def test_a_changed_extra_makes_its_lock_stale() -> None:
    # Given pyproject with a requirement added to the render extra
    pyproject = copy.deepcopy(lock.read_pyproject())
    pyproject["project"]["optional-dependencies"]["render"].append("scipy>=1.0")
    # Then the render lock no longer matches, and says how to fix it; the others still do
    found = lock.problems(pyproject, "render", _text("render"))
    assert any("run python deploy/lock.py" in p for p in found), found
    assert any("scipy is not pinned" in p for p in found), found
    assert lock.problems(pyproject, "status", _text("status")) == []


def test_a_pin_outside_its_bound_is_reported() -> None:
    text = _text("status").replace("gunicorn==", "gunicorn==22.0.0 \\\n    # was ", 1)
    assert "status: gunicorn==22.0.0 is outside >=23" in lock.problems(
        lock.read_pyproject(), "status", text
    )


def test_bounds_are_past_known_cves_and_the_opencv_that_renders_truncated_jpegs() -> None:
    requirements = {
        r.split(">=")[0]: r for name in lock.IMAGE_EXTRAS for r in lock.inputs(
            lock.read_pyproject(), name
        )
    }  # fmt: skip
    assert requirements["gunicorn"] == "gunicorn>=23"
    assert requirements["pymongo"] == "pymongo>=4.6.3"
    # 4.9 and 4.10 decode a truncated JPEG to a half-grey picture; 4.11 refuses it (measured).
    assert requirements["opencv-python-headless"] == "opencv-python-headless>=4.11"


@pytest.mark.parametrize(
    ("name", "absent"),
    [
        ("status", {"pillow", "opencv-python-headless", "numpy", "rawpy", "pi-heif"}),
        ("scanner", {"opencv-python-headless", "falcon", "gunicorn", "secantusdb"}),
        ("control", {"opencv-python-headless", "falcon", "gunicorn", "secantusdb"}),
        ("render", {"falcon", "gunicorn", "secantusdb"}),
    ],
)
def test_images_carry_no_library_they_never_load(name: str, absent: set[str]) -> None:
    carried = absent & set(lock.pins(_text(name)))
    assert not carried, f"the {name} image would carry {sorted(carried)}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_installs_its_own_lock_with_hashes(service: str) -> None:
    build = dockerfile(service)[0]
    (extras,) = [a.removeprefix("EXTRAS=") for a in build.all("ARG") if a.startswith("EXTRAS=")]
    assert extras == IMAGE_OF_SERVICE[service]
    installs = " ".join(build.all("RUN"))
    assert "--require-hashes" in installs
    assert any(f"deploy/requirements/{extras}.txt" in c for c in build.all("COPY"))


def test_thumbnail_and_cache_images_are_built_alike_but_for_their_command() -> None:
    thumbnail, cache = dockerfile("thumbnail-service"), dockerfile("cache-service")
    assert [s.instructions for s in thumbnail[:-1]] == [s.instructions for s in cache[:-1]]
    runtime_t = [i for i in thumbnail[-1].instructions if i[0] != "CMD"]
    runtime_c = [i for i in cache[-1].instructions if i[0] != "CMD"]
    assert runtime_t == runtime_c
    assert thumbnail[-1].last("CMD") != cache[-1].last("CMD")
