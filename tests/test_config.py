"""`cmi.toml`: defaults, known sections and keys, types (SPEC §2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.config import ConfigError, load_config, parse_config
from transforms.context import Config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cmi.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_documented_values() -> None:
    config = parse_config({})
    assert config == Config()
    assert config.functions.cmi_mult is False
    assert config.functions.icfullqt is False
    assert config.functions.cmi_bath is False
    assert config.serials.generated_length == 12
    assert config.serials.generated_charset == "numeric"
    assert config.serials.min_randomness_factor == 10000
    assert config.inbox.settle_seconds == 5


def test_a_missing_default_config_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "cmi.toml", explicit=False) == Config()
    assert load_config(None, explicit=False) == Config()


def test_a_missing_explicit_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="nope.toml"):
        load_config(missing, explicit=True)


def test_every_key_is_read_from_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[functions]
cmi_mult = true
icfullqt = true
cmi_bath = true

[serials]
generated_length = 16
generated_charset = "alphanumeric"
min_randomness_factor = 500

[inbox]
settle_seconds = 0
""",
    )
    config = load_config(path, explicit=True)
    assert config.functions.cmi_mult and config.functions.icfullqt and config.functions.cmi_bath
    assert config.serials.generated_length == 16
    assert config.serials.generated_charset == "alphanumeric"
    assert config.serials.min_randomness_factor == 500
    assert config.inbox.settle_seconds == 0


def test_every_key_is_optional_and_a_partial_section_keeps_the_other_defaults(
    tmp_path: Path,
) -> None:
    config = load_config(_write(tmp_path, "[serials]\ngenerated_length = 8\n"), explicit=True)
    assert config.serials.generated_length == 8
    assert config.serials.generated_charset == "numeric"
    assert config.functions == Config().functions


def test_an_unknown_section_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[serial\]"):
        load_config(_write(tmp_path, "[serial]\ngenerated_length = 8\n"), explicit=True)


def test_an_unknown_key_is_an_error_naming_it_and_its_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'cmi_multi'.*\[functions\]"):
        load_config(_write(tmp_path, "[functions]\ncmi_multi = true\n"), explicit=True)


def test_a_top_level_key_is_named_with_the_section_it_belongs_to(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'settle_seconds' stands outside .* under \[inbox\]"):
        load_config(_write(tmp_path, "settle_seconds = 5\n"), explicit=True)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[functions]\ncmi_mult = "yes"\n', "cmi_mult"),
        ("[functions]\nicfullqt = 1\n", "icfullqt"),
        ('[serials]\ngenerated_length = "12"\n', "generated_length"),
        ("[serials]\ngenerated_length = 12.5\n", "generated_length"),
        ("[serials]\nmin_randomness_factor = true\n", "min_randomness_factor"),
        ("[serials]\ngenerated_charset = 10\n", "generated_charset"),
        ('[inbox]\nsettle_seconds = "5"\n', "settle_seconds"),
        ("[inbox]\nsettle_seconds = false\n", "settle_seconds"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=named) as err:
        load_config(path, explicit=True)
    # what is wrong, where, and what to write instead (§1: what to do)
    assert str(path) in str(err.value) and f"write it like {named} = " in str(err.value)


def test_settle_seconds_may_be_a_fraction(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "[inbox]\nsettle_seconds = 0.5\n"), explicit=True)
    assert config.inbox.settle_seconds == 0.5


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[serials]\ngenerated_charset = "hex"\n', "generated_charset"),
        ("[serials]\ngenerated_length = 0\n", "generated_length"),
        ("[serials]\ngenerated_length = 21\n", "generated_length"),
        ("[serials]\nmin_randomness_factor = 0\n", "min_randomness_factor"),
        ("[inbox]\nsettle_seconds = -1\n", "settle_seconds"),
    ],
)
def test_a_value_out_of_range_is_an_error_naming_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=named) as err:
        load_config(path, explicit=True)
    # what is wrong, where, and the values it may take
    assert str(path) in str(err.value) and " must " in str(err.value)


def test_a_file_that_is_not_toml_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[serials\n"), explicit=True)


def test_a_section_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="serials"):
        load_config(_write(tmp_path, "serials = 3\n"), explicit=True)


def test_reports_notify_and_delivery_sections_are_read() -> None:
    config = parse_config(
        {
            "reports": {"html": False, "xlsx": True, "partner_xlsx": True},
            "notify": {"urls": ["json://127.0.0.1:8080/hook"], "on": ["failure", "rejects"]},
            "delivery": {
                "ACME-01": {
                    "url": "sftp://cmi@sftp.acme.example:22/incoming",
                    "key_file": "/etc/cmi/keys/acme_ed25519",
                    "known_hosts": "/etc/cmi/known_hosts",
                },
                "BIOFILL": {"url": "file:///mnt/biofill/in"},
            },
        }
    )
    assert config.reports.html is False and config.reports.partner_xlsx is True
    assert config.notify.urls == ("json://127.0.0.1:8080/hook",)
    assert config.notify.on == ("failure", "rejects")
    acme = config.delivery_for("ACME-01")
    assert acme is not None and acme.key_file == "/etc/cmi/keys/acme_ed25519"
    assert acme.url == "sftp://cmi@sftp.acme.example:22/incoming"
    biofill = config.delivery_for("BIOFILL")
    assert biofill is not None and biofill.key_file is None
    assert config.delivery_for("OTHER") is None


def test_reports_and_notify_defaults() -> None:
    config = Config()
    assert (config.reports.html, config.reports.xlsx, config.reports.partner_xlsx) == (
        True,
        True,
        False,
    )
    assert config.notify.urls == () and config.notify.on == ("failure", "quarantine")
    assert config.delivery == ()


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"notify": {"on": ["failure", "sometimes"]}}, "sometimes"),
        ({"notify": {"urls": "json://x"}}, "urls"),
        ({"reports": {"html": "yes"}}, "html"),
        ({"reports": {"pdf": True}}, "pdf"),
        ({"delivery": {"ACME": {"url": "ftp://h/x", "key_file": "k"}}}, "sftp:// or file://"),
        ({"delivery": {"ACME": {"url": "sftp://cmi@h:22/in"}}}, "key_file"),
        (
            {"delivery": {"ACME": {"url": "sftp://cmi:secret@h:22/in", "key_file": "k"}}},
            "password_env",
        ),
        ({"delivery": {"ACME": {"url": "file:///x", "host": "h"}}}, "host"),
        ({"delivery": {"ACME": {"key_file": "k"}}}, "url"),
        ({"delivery": {"-ACME": {"url": "file:///x"}}}, "cmo_id"),
        ({"delivery": {"url": "file:///x"}}, "[delivery.ACME-01]"),
    ],
)
def test_bad_reports_notify_and_delivery_sections_are_configuration_errors(
    data: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert named in str(err.value)


def test_a_delivery_password_is_named_by_its_variable_never_held() -> None:
    config = parse_config(
        {"delivery": {"ACME": {"url": "sftp://cmi@h:2222/in", "password_env": "ACME_SFTP_PW"}}}
    )
    target = config.delivery_for("ACME")
    assert target is not None and target.password_env == "ACME_SFTP_PW"
    assert "secret" not in repr(config)
