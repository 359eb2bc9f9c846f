"""A tenant's cmi.toml at `cmi deploy` (SPEC §11 tenants; README: a wrong cmi.toml is exit 2
naming the tenant and key): the message names the tenant and its `config` key and says
what to do in a tenants file — not the `--config` option `cmi deploy` does not have."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.config import ConfigError
from flows.cli import app
from flows.tenants import load_tenants

runner = CliRunner()


def _tenants(folder: Path, config: str) -> Path:
    path = folder / "tenants.toml"
    path.write_text(
        '[tenants.acme]\ninbox = "acme/inbox"\noutbox = "acme/outbox"\n'
        f'state = "acme/state/cmi.duckdb"\nconfig = "{config}"\n'
    )
    return path


def test_a_missing_cmi_toml_names_the_tenant_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_tenants(_tenants(tmp_path, "acme/cmi.toml"))
    message = str(err.value)
    assert "[tenants.acme]: config " in message
    assert str(tmp_path / "acme" / "cmi.toml") in message and "does not exist" in message
    assert "--config" not in message and "CMI_CONFIG" not in message
    assert "remove the config key" in message


def test_a_wrong_key_in_a_tenants_cmi_toml_names_the_tenant_key_and_its_key(
    tmp_path: Path,
) -> None:
    (tmp_path / "acme.toml").write_text("[functions]\ncmi_multi = true\n")
    with pytest.raises(ConfigError) as err:
        load_tenants(_tenants(tmp_path, "acme.toml"))
    assert "[tenants.acme]: config: " in str(err.value) and "cmi_multi" in str(err.value)


def test_an_empty_cmi_toml_is_the_built_in_settings(tmp_path: Path) -> None:
    (tmp_path / "acme.toml").write_text("")
    (tenant,) = load_tenants(_tenants(tmp_path, "acme.toml"))
    assert tenant.config == tmp_path / "acme.toml"


def test_cmi_deploy_with_a_missing_tenant_cmi_toml_is_exit_2_naming_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["deploy", "--tenants", str(_tenants(tmp_path, "gone.toml"))])
    assert result.exit_code == 2, result.output
    assert "[tenants.acme]: config " in result.output and "Traceback" not in result.output
