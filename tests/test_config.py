"""Settings: defaults < config file < environment < explicit overrides; unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bastion.analyzers import BUILT_IN
from bastion.config import ConfigFileError, Settings, load_settings


def test_defaults_are_embedded_and_secure() -> None:
    s = Settings()
    assert s.resolved_database_url.startswith("sqlite:///")
    assert s.fetch.allow_private is False
    assert [a.type for a in s.analyzers] == [
        *("nsfw", "labels", "ocr", "codes", "faces", "hashes"),
        *("speech", "toxicity"),
    ]


def test_precedence_file_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "b.yaml"
    cfg.write_text("port: 9001\nhost: 0.0.0.0\nlimits:\n  max_bytes: 1234\n")
    s = load_settings(cfg)
    assert (s.port, s.host, s.limits.max_bytes) == (9001, "0.0.0.0", 1234)
    monkeypatch.setenv("BASTION_PORT", "9002")
    monkeypatch.setenv("BASTION_LIMITS__MAX_PIXELS", "777")
    s = load_settings(cfg)
    assert (s.port, s.limits.max_pixels) == (9002, 777)
    assert load_settings(cfg, port=9003).port == 9003


def test_allow_private_urls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_ALLOW_PRIVATE_URLS", "1")
    assert Settings().fetch.allow_private is True


def test_analyzer_configs_validate_per_type(tmp_path: Path) -> None:
    cfg = tmp_path / "b.yaml"
    cfg.write_text("analyzers:\n  - type: labels\n    top_k: 3\n  - type: codes\n")
    s = load_settings(cfg)
    assert [a.type for a in s.analyzers] == ["labels", "codes"]
    assert s.analyzers[0].top_k == 3  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="unknown analyzer type") as info:
        Settings(analyzers=[{"type": "nope"}])
    assert f"unknown analyzer type 'nope'; known: {sorted(BUILT_IN)}" in str(info.value)
    with pytest.raises(ValidationError, match="unknown analyzer type 'nope'"):
        Settings(analyzers=["codes", "nope"])
    with pytest.raises(ValidationError, match="needs a 'type'"):
        Settings(analyzers=[{"top_k": 3}])
    assert [a.type for a in Settings(analyzers=["codes", "hashes"]).analyzers] == [
        "codes",
        "hashes",
    ]
    with pytest.raises(ValidationError, match="top_kk"):
        Settings(analyzers=[{"type": "labels", "top_kk": 3}])
    with pytest.raises(ValidationError, match="used twice"):
        Settings(analyzers=[{"type": "codes"}, {"type": "codes"}])


def test_settings_schema_shows_each_analyzer_type_with_its_own_fields() -> None:
    schema = Settings.model_json_schema()
    items = schema["properties"]["analyzers"]["items"]
    mapping = items["discriminator"]["mapping"]
    assert items["discriminator"]["propertyName"] == "type"
    assert set(mapping) == set(BUILT_IN) and len(items["oneOf"]) == len(BUILT_IN)
    for kind, cls in BUILT_IN.items():
        model = schema["$defs"][mapping[kind].rsplit("/", 1)[1]]
        assert model["properties"]["type"]["const"] == kind
        assert set(model["properties"]) == set(cls.config_model.model_fields)
        assert model["additionalProperties"] is False
    defs = {kind: schema["$defs"][ref.rsplit("/", 1)[1]] for kind, ref in mapping.items()}
    assert "top_k" in defs["labels"]["properties"] and "top_k" not in defs["codes"]["properties"]
    assert "formats" in defs["codes"]["properties"]


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "b.yaml"
    cfg.write_text("prot: 1\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings(cfg)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("base: &b {max_bytes: 1}\nlimits: *b\n", "yaml_alias"),
        ("port: !!python/object/apply:os.getpid []\n", "yaml_tag"),
        ("port: 9001\nport: 9002\n", "yaml_duplicate_key"),
        ("port: 9001\x1a\n", "yaml_syntax"),
    ],
)
def test_config_files_are_read_with_the_bounded_loader(
    tmp_path: Path, text: str, code: str
) -> None:
    cfg = tmp_path / "b.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigFileError) as info:
        load_settings(cfg)
    assert info.value.code == code and str(cfg) in str(info.value)
