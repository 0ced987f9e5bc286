"""Settings come from defaults, a TOML file, VOCLOUD_* variables and overrides, in that order."""

import pytest

from vocloud.server.settings import Settings, SettingsError, is_loopback


def test_precedence_file_then_environment_then_overrides(tmp_path, monkeypatch):
    config = tmp_path / "vocloud.toml"
    config.write_text('port = 9001\nworkers = 3\nmax_wait = 30\nkinds = ["a.b:C"]\n')
    monkeypatch.setenv("VOCLOUD_WORKERS", "5")
    monkeypatch.setenv("VOCLOUD_KINDS", "x.y:Z, p.q:R")
    settings = Settings.load(config_file=config, max_wait=10.0, host=None)
    assert settings.port == 9001
    assert settings.workers == 5
    assert settings.kinds == ("x.y:Z", "p.q:R")
    assert settings.max_wait == 10.0
    assert settings.host == "127.0.0.1"


def test_invalid_values_are_reported_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("VOCLOUD_PORT", "not-a-port")
    with pytest.raises(SettingsError, match="port"):
        Settings.load()
    monkeypatch.delenv("VOCLOUD_PORT")
    bad = tmp_path / "bad.toml"
    bad.write_text("workers = [")
    with pytest.raises(SettingsError, match="configuration file"):
        Settings.load(config_file=bad)
    with pytest.raises(SettingsError, match="auth"):
        Settings.load(auth="kerberos")


def test_anonymous_access_only_on_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    Settings(host="127.0.0.1").check_exposure()
    Settings(host="0.0.0.0", auth="basic").check_exposure()
    with pytest.raises(SettingsError, match="anonymous"):
        Settings(host="0.0.0.0").check_exposure()
