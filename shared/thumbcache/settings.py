"""Layered configuration: built-in defaults < config files in order < environment variables.

Files are TOML. ``THUMBCACHE_CONFIG`` names them, separated by ``:`` (base first, overlays after).
Environment variables override single keys: ``THUMBCACHE_BROKER_URL`` for a top-level key,
``THUMBCACHE_WORKER__THREADS`` for a key inside a section,
``THUMBCACHE_RENDITIONS__THUMBNAIL__QUALITY`` for a key of one rendition. Renditions are
tables ``[renditions.NAME]`` (see :mod:`thumbcache.renditions`); the built-in ones are
``thumbnail`` and ``cache``, and a table for another name adds a rendition. Every value is
validated once, at start-up, and a bad one raises :class:`~thumbcache.errors.ConfigError`
naming its key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thumbcache.cpus import usable_cpus
from thumbcache.errors import ConfigError
from thumbcache.renditions import (
    DEFAULT_RENDITIONS,
    RenditionSettings,
    named,
    validate_registry,
)

ENV_PREFIX = "THUMBCACHE_"
EMBEDDED_STORES = ("auto", "sqlite", "server")
RENDER_ACTOR_SLACK_SECONDS = 60
LANE_CHOICES = ("fresh", "backfill", "all")


@dataclass(frozen=True)
class LimitSettings:
    """Safety limits, checked from headers before anything is decoded."""

    max_pixels: int = 100_000_000
    max_frames: int = 1000
    max_file_bytes: int = 512 * 1024 * 1024
    # Scans in one JPEG: real progressive files have about 10 (libjpeg's default script has
    # 10 for colour, 6 for grey); every further scan decodes the whole image again.
    max_jpeg_scans: int = 100
    # Estimated peak MB of one render's decode; above it, ImageTooLarge (docs/DECODE_LIMITS.md).
    # Pod memory follows from worker.render_memory_mb instead (docs/DEPLOYMENT.md, Memory).
    max_decode_mb: int = 384
    archive_max_entries: int = 200_000
    archive_max_total_bytes: int = 64 * 1024**3
    archive_max_ratio: float = 200.0

    def validate(self, prefix: str) -> None:
        """Limits must be positive."""
        for f in dataclasses.fields(self):
            _check(getattr(self, f.name) > 0, f"{prefix}.{f.name}", "must be positive")


@dataclass(frozen=True)
class ScanSettings:
    """How the scanner walks, records and publishes."""

    chunk_size: int = 500
    publish_batch: int = 500
    # Images per render message (one rendition each): a message per image cost the embedded
    # run's worker more CPU than its renders' state (issue 14, docs/BENCHMARKS.md). 1: one
    # message per image, as workers older than the batch actor need.
    render_batch: int = 8
    slice_seconds: float = 60.0
    queue_high_water: int = 20_000
    high_water_poll_seconds: float = 0.5

    def validate(self, prefix: str) -> None:
        """Sizes must be positive."""
        _check(self.chunk_size >= 1, f"{prefix}.chunk_size", "must be >= 1")
        _check(self.publish_batch >= 1, f"{prefix}.publish_batch", "must be >= 1")
        _check(self.render_batch >= 1, f"{prefix}.render_batch", "must be >= 1")
        _check(self.slice_seconds > 0, f"{prefix}.slice_seconds", "must be > 0")
        _check(self.queue_high_water >= 1, f"{prefix}.queue_high_water", "must be >= 1")
        _check(self.high_water_poll_seconds > 0, f"{prefix}.high_water_poll_seconds", "> 0")


@dataclass(frozen=True)
class WorkerSettings:
    """Dramatiq worker behaviour shared by every stage."""

    threads: int = 8
    # One render (read, decode, resize, encode) in its own process: past this wall-clock limit
    # the process is killed and the image fails as RenderTimeout.
    render_time_limit_seconds: int = 120
    # What one render process may allocate beyond its libraries; over it, ImageTooLarge.
    # Render pods' memory limits derive from it (docs/DEPLOYMENT.md, Memory).
    render_memory_mb: int = 1024
    # Render processes per worker (0: one per CPU this process may use, at most one per
    # thread). More threads than processes let the other threads write the job state while
    # every core renders (issue 14). Set it where memory is sized by it (containers).
    render_processes: int = 0
    # A worker serving several renditions renders an image's pending ones from one decode
    # (its other messages then find them done): both renditions of a 12 MP photo in 0.65x the
    # time of two renders (docs/BENCHMARKS.md). Such a process plans every decode for all the
    # renditions it serves, so a rendition's bytes never depend on its company.
    shared_decode: bool = True
    scan_time_limit_seconds: int = 600
    shutdown_timeout_seconds: int = 600
    max_attempts: int = 3
    max_retries: int = 5
    min_backoff_ms: int = 1000
    max_backoff_ms: int = 60_000
    fsync: bool = False
    prometheus: bool = False  # Dramatiq's exporter on :9191 (one worker per host or container)
    lane: str = "all"  # which lanes a render worker consumes: fresh, backfill or all
    # Which renditions a render worker renders (empty: all); `thumbcache worker NAME` sets it.
    renditions: tuple[str, ...] = ()

    @property
    def render_process_count(self) -> int:
        """How many renders a worker runs at once (memory: docs/DEPLOYMENT.md, Memory)."""
        return min(self.render_processes or usable_cpus(), self.threads)

    @property
    def render_actor_time_limit_seconds(self) -> int:
        """Dramatiq's limit on a whole render message: the render's own limit, times the renders
        it may wait behind for a process, plus time for its database writes (a backstop; the
        render process's limit is what stops a render)."""
        turns = -(-self.threads // self.render_process_count)
        return self.render_time_limit_seconds * turns + RENDER_ACTOR_SLACK_SECONDS

    def validate(self, prefix: str) -> None:
        """Counts and timeouts must be positive, and the slice must fit its time limit."""
        _check(self.threads >= 1, f"{prefix}.threads", "must be >= 1")
        _check(self.lane in LANE_CHOICES, f"{prefix}.lane", "must be fresh, backfill or all")
        _check(self.max_attempts >= 1, f"{prefix}.max_attempts", "must be >= 1")
        _check(self.max_retries >= 0, f"{prefix}.max_retries", "must be >= 0")
        _check(self.render_time_limit_seconds >= 1, f"{prefix}.render_time_limit_seconds", ">= 1")
        _check(self.scan_time_limit_seconds >= 1, f"{prefix}.scan_time_limit_seconds", ">= 1")
        _check(self.render_processes >= 0, f"{prefix}.render_processes", ">= 0 (0: one per CPU)")
        _check(self.render_memory_mb >= 0, f"{prefix}.render_memory_mb", ">= 0 (0: no ceiling)")
        _check(self.min_backoff_ms >= 0, f"{prefix}.min_backoff_ms", "must be >= 0")
        _check(
            self.max_backoff_ms >= self.min_backoff_ms,
            f"{prefix}.max_backoff_ms",
            "must be >= min_backoff_ms",
        )


@dataclass(frozen=True)
class OpsSettings:
    """Operations: recovery, stale items, quarantine, alerts, orphan cleanup."""

    recovery_lease_seconds: int = 300
    recovery_idle_seconds: int = 120
    stale_after_seconds: int = 900
    stalled_after_seconds: int = 900
    max_stale_requeues: int = 3
    quarantine_after_failures: int = 3
    alert_failure_ratio: float = 0.2
    alert_min_images: int = 20
    alert_webhook_url: str = ""
    alert_webhook_retries: int = 3
    alert_webhook_timeout_seconds: float = 5.0
    orphan_grace_seconds: int = 7 * 24 * 3600

    def validate(self, prefix: str) -> None:
        """Durations and counts must be positive; the ratio a fraction; the webhook a URL."""
        for name in ("recovery_lease_seconds", "stale_after_seconds", "stalled_after_seconds",
                     "max_stale_requeues", "quarantine_after_failures"):  # fmt: skip
            _check(getattr(self, name) >= 1, f"{prefix}.{name}", "must be >= 1")
        _check(self.recovery_idle_seconds >= 0, f"{prefix}.recovery_idle_seconds", ">= 0")
        _check(self.orphan_grace_seconds >= 0, f"{prefix}.orphan_grace_seconds", ">= 0")
        _check(0 < self.alert_failure_ratio <= 1, f"{prefix}.alert_failure_ratio", "in (0, 1]")
        _check(self.alert_min_images >= 1, f"{prefix}.alert_min_images", ">= 1")
        _check(
            not self.alert_webhook_url
            or self.alert_webhook_url.startswith(("http://", "https://")),
            f"{prefix}.alert_webhook_url",
            "must be empty or an http(s) URL",
        )


@dataclass(frozen=True)
class StatusSettings:
    """The status service: which folders ``POST /v1/scans`` may scan, whether a token is
    required (the token itself comes from ``THUMBCACHE_API_TOKEN``, never a file), and what the
    API shows and to whom (docs/OPERATIONS.md, "Securing the API")."""

    allowed_roots: tuple[str, ...] = ()
    require_token: bool = False
    # With a token, reads need it too unless this is on (a public read-only dashboard).
    public_reads: bool = False
    # Absolute folder paths in responses (off: relative to an allowed root, or ".../name").
    show_paths: bool = False
    # Host names a loopback listener answers besides localhost, 127.0.0.1 and [::1].
    allowed_hosts: tuple[str, ...] = ()
    # A dry run (POST /v1/scans with "dry_run") stops after this many images or seconds.
    plan_max_images: int = 1000
    plan_max_seconds: float = 5.0

    def validate(self, prefix: str) -> None:
        """Allowed roots must be absolute and never ``/``; plan bounds positive."""
        for root in self.allowed_roots:
            _check(root.startswith("/"), f"{prefix}.allowed_roots", f"{root!r} is not absolute")
            _check(
                os.path.realpath(root) != "/",
                f"{prefix}.allowed_roots",
                "'/' would allow scans of the whole machine",
            )
        _check(self.plan_max_images >= 1, f"{prefix}.plan_max_images", "must be >= 1")
        _check(self.plan_max_seconds > 0, f"{prefix}.plan_max_seconds", "must be positive")


@dataclass(frozen=True)
class Settings:
    """The one validated settings object every service reads at its edge."""

    broker_url: str = "memory://"
    mongo_url: str = ""
    database: str = "thumbcache"
    data_dir: str = ".thumbcache"
    # Without a MongoDB URL: "sqlite" (one file in the data dir, in-process), "server" (the
    # embedded MongoDB-protocol server), "auto" (sqlite, unless the data dir already holds the
    # server's storage and no sqlite file).
    embedded_store: str = "auto"
    cache_folders: tuple[str, ...] = ()
    renditions: Mapping[str, RenditionSettings] = field(
        default_factory=lambda: dict(DEFAULT_RENDITIONS)
    )
    limits: LimitSettings = field(default_factory=LimitSettings)
    scan: ScanSettings = field(default_factory=ScanSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)

    def validate(self) -> Settings:
        """Validate every section; return self so construction reads as one expression."""
        _check(
            self.broker_url.split("://", 1)[0] in ("memory", "amqp", "amqps"),
            "broker_url",
            "must start with memory://, amqp:// or amqps://",
        )
        _check(
            not self.mongo_url or self.mongo_url.startswith(("mongodb://", "mongodb+srv://")),
            "mongo_url",
            "must be empty (embedded) or a mongodb:// URL",
        )
        _check(bool(self.database), "database", "must not be empty")
        _check(
            self.embedded_store in EMBEDDED_STORES,
            "embedded_store",
            f"must be one of {', '.join(EMBEDDED_STORES)}",
        )
        validate_registry(self.renditions)
        for name in self.worker.renditions:
            _check(name in self.renditions, "worker.renditions", f"{name!r} is not a rendition")
        self.limits.validate("limits")
        self.scan.validate("scan")
        self.worker.validate("worker")
        self.status.validate("status")
        self.ops.validate("ops")
        return self

    @property
    def embedded(self) -> bool:
        """True when no MongoDB URL is configured: the store lives under ``data_dir``."""
        return not self.mongo_url

    @property
    def in_process_broker(self) -> bool:
        """True for ``memory://``: every stage runs in this process (the embedded default)."""
        return self.broker_url.startswith("memory://")

    @property
    def rendition_names(self) -> tuple[str, ...]:
        """The configured renditions, in declaration order."""
        return tuple(self.renditions)

    def rendition(self, name: str) -> RenditionSettings:
        """One configured rendition; LookupError names the ones there are."""
        try:
            return self.renditions[name]
        except KeyError:
            raise LookupError(
                f"no rendition {name!r} (configured: {', '.join(self.renditions)})"
            ) from None

    def served_renditions(self) -> tuple[str, ...]:
        """The renditions a render worker of these settings renders (``worker.renditions``)."""
        return self.worker.renditions or self.rendition_names

    def effective_cache_folders(self) -> tuple[str, ...]:
        """Configured cache folders, or one folder under the data directory."""
        if self.cache_folders:
            return tuple(str(Path(p).expanduser().resolve()) for p in self.cache_folders)
        return (str((Path(self.data_dir).expanduser() / "cache").resolve()),)


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"setting {key!r} {why}")


def load_settings(
    files: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from defaults, then ``files`` (or ``THUMBCACHE_CONFIG``), then ``env``.

    ``overrides`` (from command-line flags) sit on top of everything.
    """
    env = os.environ if env is None else env
    layers: dict[str, Any] = {}
    if files is None:
        files = [p for p in env.get(ENV_PREFIX + "CONFIG", "").split(":") if p]
    for path in files:
        _merge(layers, _read_toml(path))
    _merge(layers, _env_layer(env))
    if overrides:
        _merge(layers, dict(overrides))
    for legacy in LEGACY_RENDITION_SECTIONS & set(layers):
        raise ConfigError(f"setting {legacy!r} moved: write it as [renditions.{legacy}]")
    settings: Settings = _build(Settings, layers, "")
    return settings.validate()


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in _FIELD_NAMES and path[0] not in LEGACY_RENDITION_SECTIONS:
            continue  # other THUMBCACHE_* variables (API token, fault hooks) are not settings
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return layer


def _merge(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _build(cls: type[Any], values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown setting {prefix + sorted(unknown)[0]!r}")
    kwargs: dict[str, Any] = {}
    base = cls() if cls is not RenditionSettings else None
    for name in known & set(values):
        key = prefix + name
        hint = hints[name]
        value = values[name]
        if cls is Settings and name == "renditions":
            kwargs[name] = _build_renditions(value)
        elif dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"setting {key!r} must be a table")
            current = getattr(base, name)
            merged = {**dataclasses.asdict(current), **value}
            kwargs[name] = _build(hint, merged, key + ".")  # type: ignore[arg-type]
        else:
            kwargs[name] = _coerce(value, hint, key)
    return cls(**kwargs)


def _build_renditions(tables: Any) -> dict[str, RenditionSettings]:
    """The registry: built-in renditions, each overlaid by its table, plus new ones."""
    if not isinstance(tables, Mapping) or not all(isinstance(t, Mapping) for t in tables.values()):
        raise ConfigError("setting 'renditions' must be tables [renditions.NAME]")
    registry = dict(DEFAULT_RENDITIONS)
    for name, table in tables.items():
        key = f"renditions.{name}"
        if name not in registry and not {"width", "height"} <= set(table):
            raise ConfigError(f"setting {key!r} declares a new rendition: give width and height")
        if "name" in table and table["name"] != name:
            raise ConfigError(f"setting {key + '.name'!r} must be {name!r} (its table's name)")
        current = dataclasses.asdict(registry[name]) if name in registry else {}
        registry[name] = named(name, _build(RenditionSettings, {**current, **table}, key + "."))
    return registry


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        if origin is tuple or (isinstance(hint, types.GenericAlias) and origin is tuple):
            items = value.split(":") if isinstance(value, str) else list(value)
            return tuple(str(v) for v in items if str(v))
    except (TypeError, ValueError):
        raise ConfigError(f"setting {key!r} has an invalid value {value!r}") from None
    raise ConfigError(f"setting {key!r} has an unsupported type")  # pragma: no cover


_FIELD_NAMES = {f.name for f in dataclasses.fields(Settings)}
LEGACY_RENDITION_SECTIONS = frozenset({"thumbnail", "cache"})  # before [renditions.NAME]
