"""Settings.from_env with plain dicts (never the real environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas_image_mcp.constants import DEFAULT_BASE_URL
from atlas_image_mcp.settings import Settings, SettingsError, default_output_dir

MB = 1024 * 1024


def test_an_empty_environment_gives_the_documented_defaults():
    s = Settings.from_env({})

    assert s.api_key is None
    assert s.base_url == "https://api.atlascloud.ai" == DEFAULT_BASE_URL
    assert s.timeout == 30.0
    assert s.connect_timeout == 10.0
    assert s.upload_timeout == 300.0
    assert s.max_retries == 3
    assert s.wait_seconds == 45.0
    assert s.image_mode == "thumbnail"
    assert s.output_dir is None
    assert s.output_dir_explicit is False
    assert s.save is True
    assert s.max_upload_bytes == 50 * MB
    assert s.max_download_bytes == 50 * MB
    assert s.max_images_per_hour is None
    assert s.log_level == "INFO"
    assert s.auth_token is None
    assert s.user_keys is False
    assert s.upload_root is None
    assert s.allowed_hosts == ()
    assert s.allowed_origins == ()


def test_from_env_reads_every_variable(tmp_path):
    env = {
        "ATLASCLOUD_API_KEY": "  apikey-abc123456  ",
        "ATLASCLOUD_BASE_URL": "http://127.0.0.1:8765/api/v1/",
        "ATLAS_MCP_TIMEOUT": "12.5",
        "ATLAS_MCP_CONNECT_TIMEOUT": "3",
        "ATLAS_MCP_UPLOAD_TIMEOUT": "60",
        "ATLAS_MCP_MAX_RETRIES": "0",
        "ATLAS_MCP_WAIT_SECONDS": "600",
        "ATLAS_MCP_IMAGE_MODE": "FULL",
        "ATLAS_MCP_OUTPUT_DIR": str(tmp_path / "out"),
        "ATLAS_MCP_SAVE": "no",
        "ATLAS_MCP_MAX_UPLOAD_MB": "1.5",
        "ATLAS_MCP_MAX_DOWNLOAD_MB": "2",
        "ATLAS_MCP_MAX_IMAGES_PER_HOUR": "20",
        "ATLAS_MCP_LOG_LEVEL": "debug",
        "ATLAS_MCP_AUTH_TOKEN": "tok",
        "ATLAS_MCP_USER_KEYS": "true",
        "ATLAS_MCP_UPLOAD_ROOT": str(tmp_path),
        "ATLAS_MCP_ALLOWED_HOSTS": " mcp.example.com, ,other.example ",
        "ATLAS_MCP_ALLOWED_ORIGINS": "https://app.example",
    }
    s = Settings.from_env(env)

    assert s.api_key == "apikey-abc123456"
    assert s.base_url == "http://127.0.0.1:8765"
    assert (s.timeout, s.connect_timeout, s.upload_timeout) == (12.5, 3.0, 60.0)
    assert s.max_retries == 0
    assert s.wait_seconds == 600.0
    assert s.image_mode == "full"
    assert s.output_dir == (tmp_path / "out").resolve()
    assert s.output_dir_explicit is True
    assert s.save is False
    assert s.max_upload_bytes == int(1.5 * MB)
    assert s.max_download_bytes == 2 * MB
    assert s.max_images_per_hour == 20
    assert s.log_level == "DEBUG"
    assert s.auth_token == "tok"
    assert s.user_keys is True
    assert s.upload_root == tmp_path.resolve()
    assert s.allowed_hosts == ("mcp.example.com", "other.example")
    assert s.allowed_origins == ("https://app.example",)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.atlascloud.ai", "https://api.atlascloud.ai"),
        ("https://api.atlascloud.ai/", "https://api.atlascloud.ai"),
        ("https://api.atlascloud.ai/api", "https://api.atlascloud.ai"),
        ("https://api.atlascloud.ai/api/", "https://api.atlascloud.ai"),
        ("https://api.atlascloud.ai/api/v1", "https://api.atlascloud.ai"),
        ("https://api.atlascloud.ai/api/v1/", "https://api.atlascloud.ai"),
        ("  http://localhost:8000/api/v1  ", "http://localhost:8000"),
        ("https://proxy.example/atlas/api/v1", "https://proxy.example/atlas"),
    ],
)
def test_the_base_url_is_normalised_to_the_api_origin(given, expected):
    assert Settings.from_env({"ATLASCLOUD_BASE_URL": given}).base_url == expected
    assert Settings(base_url=given).base_url == expected


@pytest.mark.parametrize("url", ["api.atlascloud.ai", "ftp://api.atlascloud.ai", "//api.atlascloud.ai"])
def test_a_base_url_without_http_scheme_is_refused(url):
    with pytest.raises(SettingsError, match="ATLASCLOUD_BASE_URL"):
        Settings.from_env({"ATLASCLOUD_BASE_URL": url})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ATLAS_MCP_TIMEOUT", "thirty"),
        ("ATLAS_MCP_TIMEOUT", "-1"),
        ("ATLAS_MCP_TIMEOUT", "nan"),
        ("ATLAS_MCP_CONNECT_TIMEOUT", "10s"),
        ("ATLAS_MCP_UPLOAD_TIMEOUT", "5m"),
        ("ATLAS_MCP_MAX_RETRIES", "2.5"),
        ("ATLAS_MCP_MAX_RETRIES", "-3"),
        ("ATLAS_MCP_WAIT_SECONDS", "forever"),
        ("ATLAS_MCP_WAIT_SECONDS", "601"),
        ("ATLAS_MCP_MAX_UPLOAD_MB", "fifty"),
        ("ATLAS_MCP_MAX_DOWNLOAD_MB", "-5"),
        ("ATLAS_MCP_MAX_IMAGES_PER_HOUR", "lots"),
        ("ATLAS_MCP_SAVE", "maybe"),
        ("ATLAS_MCP_USER_KEYS", "2"),
        ("ATLAS_MCP_IMAGE_MODE", "huge"),
        ("ATLAS_MCP_MAX_UPLOAD_MB", "inf"),
        ("ATLAS_MCP_MAX_DOWNLOAD_MB", "1e400"),
    ],
)
def test_a_bad_value_raises_settings_error_naming_the_variable(name, value):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})

    assert name in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", False), ("false", False), ("OFF", False), ("no", False), ("1", True), ("yes", True), ("", True)],
)
def test_atlas_mcp_save_turns_saving_off_or_on(value, expected):
    assert Settings.from_env({"ATLAS_MCP_SAVE": value}).save is expected


@pytest.mark.parametrize("env", [{}, {"ATLASCLOUD_API_KEY": ""}, {"ATLASCLOUD_API_KEY": "   "}])
def test_a_missing_api_key_is_fine_and_reads_as_none(env):
    assert Settings.from_env(env).api_key is None


def test_max_images_per_hour_zero_means_unlimited():
    assert Settings.from_env({"ATLAS_MCP_MAX_IMAGES_PER_HOUR": "0"}).max_images_per_hour is None


def test_the_repr_never_shows_the_api_key_or_the_auth_token():
    s = Settings(api_key="k-123456789", auth_token="tok-987654321")

    assert "k-123456789" not in repr(s)
    assert "tok-987654321" not in repr(s)
    assert "k-123456789" not in str(s)
    assert "base_url='https://api.atlascloud.ai'" in repr(s)


def test_replace_keeps_everything_else_and_revalidates():
    s = Settings.from_env({"ATLASCLOUD_API_KEY": "k-1", "ATLAS_MCP_TIMEOUT": "5"})
    t = s.replace(base_url="https://other.example/api/v1/")

    assert t.base_url == "https://other.example"
    assert t.api_key == "k-1"
    assert t.timeout == 5.0
    with pytest.raises(SettingsError):
        s.replace(image_mode="poster")


def test_the_default_output_dir_is_in_the_home_folder_never_the_working_directory(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)

    out = Settings.from_env({}).resolved_output_dir

    assert out == home / "atlas-image-mcp"
    assert out.is_absolute()
    assert out != Path.cwd()
    assert Path.cwd() not in (out, *out.parents)


def test_the_default_output_dir_prefers_a_pictures_folder(tmp_path):
    (tmp_path / "Pictures").mkdir()

    assert default_output_dir(tmp_path) == tmp_path / "Pictures" / "atlas-image-mcp"


def test_the_default_output_dir_without_pictures_is_under_home(tmp_path):
    assert default_output_dir(tmp_path) == tmp_path / "atlas-image-mcp"


def test_an_explicit_output_dir_wins_and_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))

    s = Settings.from_env({"ATLAS_MCP_OUTPUT_DIR": "~/my pictures"})

    assert s.output_dir == (tmp_path / "my pictures").resolve()
    assert s.resolved_output_dir == s.output_dir
    assert s.output_dir_explicit is True


def test_a_bad_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"ATLAS_MCP_TASK_SECRET": "tooshort-xyz"})
    assert "ATLAS_MCP_TASK_SECRET" in str(refused.value) and "16" in str(refused.value)
    assert "tooshort-xyz" not in str(refused.value)
    assert Settings(task_secret="x" * 16).task_secret == "x" * 16
