"""The essentials a Dockerfile linter would check, for each service's image (no hadolint here)."""

from __future__ import annotations

import re
import tomllib

import pytest
from deploy_helpers import ROOT, SERVICES, WORKER_SERVICES, container_command, dockerfile, exec_form

# The one service file a runtime stage copies: a settings file, not code (its name has dots).
GUNICORN_CONF = "services/status-service/thumbcache_status/gunicorn.conf.py"
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


@pytest.mark.parametrize("service", SERVICES)
def test_every_base_image_is_pinned_to_a_full_version(service: str) -> None:
    for stage in dockerfile(service):
        assert PINNED.match(stage.image), stage.image
        assert ":" in stage.image or "@sha256:" in stage.image, f"{stage.image}: no tag"
        assert not stage.image.endswith(":latest"), stage.image


@pytest.mark.parametrize("service", SERVICES)
def test_the_runtime_stage_runs_as_a_numeric_non_root_user(service: str) -> None:
    final = dockerfile(service)[-1]
    user = final.last("USER")
    assert user is not None, "the final stage has no USER: it would run as root"
    uid = user.split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0, user


@pytest.mark.parametrize("service", SERVICES)
def test_the_runtime_stage_is_slim_and_multi_stage(service: str) -> None:
    stages = dockerfile(service)
    assert len(stages) >= 2, "build tools and sources must stay in a build stage"
    assert "slim" in stages[-1].image


@pytest.mark.parametrize("service", SERVICES)
def test_dependencies_install_before_the_code_is_copied(service: str) -> None:
    build = dockerfile(service)[0]
    steps = [(kw, args) for kw, args in build.instructions if kw in ("RUN", "COPY")]
    first_code = next(
        i for i, (kw, a) in enumerate(steps) if kw == "COPY" and a.startswith("shared/")
    )
    lock_copy = next(i for i, (kw, a) in enumerate(steps) if "deploy/requirements/" in a)
    deps_install = next(i for i, (kw, a) in enumerate(steps) if "build.sh dependencies" in a)
    assert lock_copy < deps_install < first_code, "a code change would reinstall every dependency"
    # Only the lock decides that layer: nothing of the code is copied before it.
    assert not any(a.startswith(("shared/", "services/")) for _, a in steps[:deps_install])


@pytest.mark.parametrize("service", SERVICES)
def test_the_shared_library_is_installed_not_copied_into_the_runtime(service: str) -> None:
    final = dockerfile(service)[-1]
    copied = [c for c in final.all("COPY") if not c.startswith(GUNICORN_CONF)]
    assert not any(c.startswith(("shared/", "services/")) for c in copied), copied
    assert "--from=build /opt/venv /opt/venv" in copied


@pytest.mark.parametrize("service", SERVICES)
def test_the_extras_installed_exist_in_pyproject(service: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    declared = [a for a in dockerfile(service)[0].all("ARG") if a.startswith("EXTRAS=")]
    assert declared, "the build stage declares no EXTRAS"
    for extra in declared[0].removeprefix("EXTRAS=").split(","):
        assert extra in extras, f"{service} installs unknown extra {extra!r}"
    if service == "status-service":
        assert "render" not in declared[0], "the status service ships no OpenCV"


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_and_cmd_are_exec_form_so_pid_1_gets_sigterm(service: str) -> None:
    final = dockerfile(service)[-1]
    exec_form(final.last("ENTRYPOINT"))
    exec_form(final.last("CMD"))


@pytest.mark.parametrize("service", WORKER_SERVICES)
def test_worker_images_run_their_own_stage(service: str) -> None:
    stage = {"scanner": "scanner", "thumbnail-service": "thumbnail", "cache-service": "cache"}
    assert container_command(service) == ["thumbcache", "worker", stage[service]]


@pytest.mark.parametrize("service", SERVICES)
def test_long_running_images_have_a_healthcheck(service: str) -> None:
    healthcheck = dockerfile(service)[-1].last("HEALTHCHECK")
    assert healthcheck is not None
    if service == "control":
        assert healthcheck == "NONE"  # one-shot commands
    else:
        assert "CMD [" in healthcheck, "exec form: no shell in the check"


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_defaults_to_the_base_config_layer(service: str) -> None:
    final = dockerfile(service)[-1]
    assert final.env()["THUMBCACHE_CONFIG"] == "/etc/thumbcache/base.toml"
    assert "config/base.toml /etc/thumbcache/base.toml" in final.all("COPY")


def test_dockerignore_sends_only_what_the_images_install() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "an allow-list: everything else (tests, .git, k8s) stays out"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert allowed == {
        "pyproject.toml", "README.md", "shared", "services", "config/base.toml",
        "deploy/image", "deploy/requirements",
    }  # fmt: skip
    for service in SERVICES:  # every source a Dockerfile copies from the context is allowed
        for stage in dockerfile(service):
            for args in stage.all("COPY"):
                if args.startswith("--from"):
                    continue
                for source in args.split()[:-1]:
                    top = source.rstrip("*").rstrip("/")
                    assert any(top == a or top.startswith(a + "/") for a in allowed), source
