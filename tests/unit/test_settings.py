"""Configuration layering: defaults < files in order < environment < overrides."""

import re

import pytest
from thumbcache.errors import ConfigError
from thumbcache.settings import load_settings


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_match_the_review():
    settings = load_settings(files=[], env={})
    thumbnail, cache = settings.renditions["thumbnail"], settings.renditions["cache"]
    assert settings.rendition_names == ("thumbnail", "cache")
    assert (thumbnail.width, thumbnail.height) == (300, 300)
    assert (cache.width, cache.height) == (1920, 1080)
    assert thumbnail.quality == cache.quality == 85
    assert settings.broker_url == "memory://"
    assert settings.embedded


def test_files_apply_in_order_then_environment_wins(tmp_path):
    base = write(tmp_path, "base.toml", "[renditions.thumbnail]\nwidth = 200\nquality = 70\n")
    prod = write(tmp_path, "prod.toml", "[renditions.thumbnail]\nwidth = 256\n")
    settings = load_settings(
        env={
            "THUMBCACHE_CONFIG": f"{base}:{prod}",
            "THUMBCACHE_RENDITIONS__THUMBNAIL__QUALITY": "60",
        }
    )
    thumbnail = settings.renditions["thumbnail"]
    assert thumbnail.width == 256  # overlay beats base
    assert thumbnail.height == 300  # untouched default survives a partial table
    assert thumbnail.quality == 60  # environment beats files
    assert thumbnail.folder_name == "thumbnails"  # and so do the built-in names


def test_documented_variables_work():
    settings = load_settings(
        files=[],
        env={
            "THUMBCACHE_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672",
            "THUMBCACHE_MONGO_URL": "mongodb://db:27017",
            "THUMBCACHE_CACHE_FOLDERS": "/a:/b",
        },
    )
    assert settings.broker_url.startswith("amqp://")
    assert settings.mongo_url == "mongodb://db:27017"
    assert settings.cache_folders == ("/a", "/b")
    assert not settings.embedded


def test_overrides_sit_on_top():
    settings = load_settings(
        files=[], env={"THUMBCACHE_DATA_DIR": "/x"}, overrides={"data_dir": "/y"}
    )
    assert settings.data_dir == "/y"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"THUMBCACHE_RENDITIONS__THUMBNAIL__QUALITY": "101"}, "renditions.thumbnail.quality"),
        ({"THUMBCACHE_RENDITIONS__CACHE__WIDTH": "wide"}, "renditions.cache.width"),
        ({"THUMBCACHE_RENDITIONS__CACHE__FORMAT": "gif"}, "renditions.cache.format"),
        ({"THUMBCACHE_RENDITIONS__PREVIEW__WIDTH": "600"}, "renditions.preview"),  # no height
        (
            {"THUMBCACHE_RENDITIONS__SCAN__WIDTH": "6", "THUMBCACHE_RENDITIONS__SCAN__HEIGHT": "6"},
            "renditions.scan",
        ),
        ({"THUMBCACHE_RENDITIONS__CACHE__QUEUE": "thumbnail"}, "renditions"),  # shared queue
        ({"THUMBCACHE_RENDITIONS__CACHE__FILE_NAME": "x.jpg"}, "renditions.cache.file_name"),
        ({"THUMBCACHE_WORKER__RENDITIONS": "nope"}, "worker.renditions"),
        ({"THUMBCACHE_THUMBNAIL__QUALITY": "80"}, "[renditions.thumbnail]"),  # the old form
        ({"THUMBCACHE_BROKER_URL": "redis://x"}, "broker_url"),
        ({"THUMBCACHE_SCAN__CHUNK_SIZE": "0"}, "scan.chunk_size"),
        ({"THUMBCACHE_SCAN__RENDER_BATCH": "0"}, "scan.render_batch"),
        ({"THUMBCACHE_RENDITIONS__CACHE__ACTOR": "generate_thumbnail_batch"}, "renditions"),
        ({"THUMBCACHE_WORKER__FSYNC": "maybe"}, "fsync"),
        ({"THUMBCACHE_RENDITIONS__THUMBNAIL__NOPE": "1"}, "renditions.thumbnail.nope"),
    ],
)
def test_a_bad_value_fails_naming_its_key(env, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(files=[], env=env)


def test_unknown_key_in_a_file_is_refused(tmp_path):
    path = write(tmp_path, "bad.toml", "[scan]\nchunk = 5\n")
    with pytest.raises(ConfigError, match=r"scan\.chunk"):
        load_settings(files=[path], env={})


def test_missing_or_broken_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(files=[str(tmp_path / "nope.toml")], env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(files=[write(tmp_path, "x.toml", "[[[")], env={})


def test_unrelated_thumbcache_variables_are_not_settings():
    settings = load_settings(files=[], env={"THUMBCACHE_API_TOKEN": "secret"})
    assert settings.broker_url == "memory://"


def test_a_table_adds_a_rendition_with_names_derived_from_it(tmp_path):
    # Given a configuration file that declares a third rendition by its box alone
    path = write(tmp_path, "base.toml", "[renditions.preview]\nwidth = 600\nheight = 600\n")
    # When settings load
    settings = load_settings(files=[path], env={})
    # Then it is a rendition like the built-in ones, after them, with its own names
    assert settings.rendition_names == ("thumbnail", "cache", "preview")
    preview = settings.rendition("preview")
    assert (preview.width, preview.height, preview.quality, preview.format) == (
        600,
        600,
        85,
        "jpeg",
    )
    assert (preview.queue_name, preview.backfill_queue_name) == ("preview", "preview-backfill")
    assert (preview.actor_name, preview.folder_name) == ("generate_preview", "preview")
    assert settings.served_renditions() == ("thumbnail", "cache", "preview")


def test_a_worker_can_be_bound_to_its_renditions():
    settings = load_settings(files=[], env={"THUMBCACHE_WORKER__RENDITIONS": "cache"})
    assert settings.served_renditions() == ("cache",)
    with pytest.raises(LookupError, match="configured: thumbnail, cache"):
        settings.rendition("preview")
