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
    assert (settings.thumbnail.width, settings.thumbnail.height) == (300, 300)
    assert (settings.cache.width, settings.cache.height) == (1920, 1080)
    assert settings.thumbnail.quality == settings.cache.quality == 85
    assert settings.broker_url == "memory://"
    assert settings.embedded


def test_files_apply_in_order_then_environment_wins(tmp_path):
    base = write(tmp_path, "base.toml", "[thumbnail]\nwidth = 200\nquality = 70\n")
    prod = write(tmp_path, "prod.toml", "[thumbnail]\nwidth = 256\n")
    settings = load_settings(
        env={"THUMBCACHE_CONFIG": f"{base}:{prod}", "THUMBCACHE_THUMBNAIL__QUALITY": "60"}
    )
    assert settings.thumbnail.width == 256  # overlay beats base
    assert settings.thumbnail.height == 300  # untouched default survives a partial table
    assert settings.thumbnail.quality == 60  # environment beats files


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
        ({"THUMBCACHE_THUMBNAIL__QUALITY": "101"}, "thumbnail.quality"),
        ({"THUMBCACHE_CACHE__WIDTH": "wide"}, "width"),
        ({"THUMBCACHE_CACHE__FORMAT": "gif"}, "cache.format"),
        ({"THUMBCACHE_BROKER_URL": "redis://x"}, "broker_url"),
        ({"THUMBCACHE_SCAN__CHUNK_SIZE": "0"}, "scan.chunk_size"),
        ({"THUMBCACHE_WORKER__FSYNC": "maybe"}, "fsync"),
        ({"THUMBCACHE_THUMBNAIL__NOPE": "1"}, "thumbnail.nope"),
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
