"""docker-compose.yml: valid against the Compose specification, and the topology it promises."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
from deploy_helpers import (
    COMPOSE_WORKERS,
    ROOT,
    compose,
    config_files,
    container_command,
    queue_consumed,
)
from thumbcache.settings import load_settings


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    # The schema of the Compose specification, as vendored by check-jsonschema.
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []


def test_every_stage_and_its_servers_are_there() -> None:
    services = compose()["services"]
    assert {"rabbitmq", "mongodb", "scanner", "thumbnail-service", "cache-service",
            "status-service"} <= set(services)  # fmt: skip
    assert services["rabbitmq"]["image"].endswith("-management"), "KEDA and people read it"
    for name in ("rabbitmq", "mongodb"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
        assert ":" in services[name]["image"] and "latest" not in services[name]["image"]


def test_stages_wait_for_healthy_servers() -> None:
    services = compose()["services"]
    for name in (*COMPOSE_WORKERS, "status-service"):
        depends = services[name]["depends_on"]
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
        assert depends["mongodb"]["condition"] == "service_healthy", name


def test_workers_can_be_scaled_with_one_flag() -> None:
    # `docker compose up --scale thumbnail-service=4` fails on a fixed name or host port.
    services = compose()["services"]
    for name in COMPOSE_WORKERS:
        assert "container_name" not in services[name], name
        assert "ports" not in services[name], name


def test_workers_share_the_named_cache_volume_and_the_collections() -> None:
    data = compose()
    assert "cache" in data["volumes"]
    for name in (*COMPOSE_WORKERS, "control"):
        volumes = data["services"][name]["volumes"]
        assert "cache:/var/lib/thumbcache/cache" in volumes, name
        assert any(v.endswith(":/collections:ro") for v in volumes), name
        assert "./config:/etc/thumbcache:ro" in volumes, name


def test_compose_uses_the_layered_config_and_images_run_their_dockerfile_command() -> None:
    services = compose()["services"]
    for name in (*COMPOSE_WORKERS, "status-service", "control"):
        service = services[name]
        env = service["environment"]
        files = config_files(env)
        assert [f.name for f in files] == ["base.toml", "dev.toml"], name
        load_settings(files=[str(f) for f in files], env=env)
        assert "command" not in service and "entrypoint" not in service, (
            f"{name} must run the image's own command (tested in test_container_commands)"
        )
        if "build" in service:
            dockerfile = ROOT / service["build"]["dockerfile"]
            assert service["build"]["context"] == "." and dockerfile.exists(), name
            container_command(dockerfile.parent.name)  # parses


def test_compose_hardens_its_containers_like_the_pods() -> None:
    services = compose()["services"]
    for name in (*COMPOSE_WORKERS, "status-service", "control"):
        service = services[name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name


def test_every_compose_worker_consumes_the_one_lane_it_names() -> None:
    services = compose()["services"]
    queues = {}
    for name in COMPOSE_WORKERS:
        service = services[name]
        image = service["image"].split("/")[1].split(":")[0]  # thumbcache/<service>:tag
        queues[name] = queue_consumed(container_command(image)[1:], service["environment"])
    assert queues == {
        "scanner": "scan",
        "thumbnail-service": "thumbnail",
        "thumbnail-service-backfill": "thumbnail-backfill",
        "cache-service": "cache",
        "cache-service-backfill": "cache-backfill",
    }
