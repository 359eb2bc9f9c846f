"""The tenants file of `cmi deploy` (SPEC §11): every mistake is exit 2 naming the tenant and
key, before any server is asked; schedules follow the tenant's time zone."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from connectors.config import ConfigError
from flows.cli import app
from flows.tenants import DEFAULT_CRON, load_tenants, local_timezone, parse_tenants

runner = CliRunner()


def good(name: str = "acme", **extra: str) -> dict[str, object]:
    spec = {"inbox": f"/srv/cmi/{name}/inbox", "outbox": f"/srv/cmi/{name}/outbox",
            "state": f"/srv/cmi/{name}/state/cmi.duckdb", **extra}  # fmt: skip
    return {"tenants": {name: spec}}


def test_a_tenant_with_defaults(tmp_path: Path) -> None:
    (t,) = parse_tenants(good(), "tenants.toml", tmp_path)
    assert (t.name, t.inbox, t.state) == ("acme", Path("/srv/cmi/acme/inbox"),
                                          Path("/srv/cmi/acme/state/cmi.duckdb"))  # fmt: skip
    assert t.cron == DEFAULT_CRON == "0 2 * * *"
    assert t.timezone == local_timezone() and t.config is None
    assert t.parameters() == {
        "inbox": "/srv/cmi/acme/inbox", "outbox": "/srv/cmi/acme/outbox",
        "state": "/srv/cmi/acme/state/cmi.duckdb", "config": None, "as_of": None,
        "tenant": "acme", "timezone": t.timezone,
    }  # fmt: skip


def test_relative_paths_are_read_from_the_files_folder(tmp_path: Path) -> None:
    (tmp_path / "acme.toml").write_text("[inbox]\nsettle_seconds = 0\n")
    (tmp_path / "tenants.toml").write_text(
        '[tenants."Acme_2.site-B"]\ninbox = "a/in"\noutbox = "a/out"\nstate = "a/s.duckdb"\n'
        'config = "acme.toml"\ncron = "30 1 * * 1-5"\ntimezone = "Europe/Berlin"\n'
    )
    (t,) = load_tenants(tmp_path / "tenants.toml")
    assert t.name == "Acme_2.site-B"
    assert t.inbox == tmp_path / "a" / "in" and t.config == tmp_path / "acme.toml"
    assert (t.cron, t.timezone) == ("30 1 * * 1-5", "Europe/Berlin")


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (good("a" * 36), "1 to 35 of A-Z a-z 0-9 . _ -"),
        (good("ac me"), "1 to 35"),
        (good("ac/me"), "1 to 35"),
        (good("acmé"), "1 to 35"),
        (good(timezone="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (good(cron="every night"), "'every night' is not a cron expression"),
        (good(cron="0 2 * * * *"), "not a cron expression"),
        (good(colour="blue"), "unknown key 'colour'"),
        ({"tenants": {"acme": {"inbox": "/i", "outbox": "/o"}}}, "state is missing"),
        ({"tenants": {"acme": {"inbox": "/i", "outbox": "/o", "state": 3}}}, "state must be a non-empty text"),
        ({"tenants": {}}, "no tenant"),
        ({"tenant": {}}, "unknown section or key 'tenant'"),
        ({"tenants": {"acme": "x"}}, "must be a section"),
    ],
)  # fmt: skip
def test_a_wrong_tenants_file_names_what_to_fix(
    tmp_path: Path, data: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError, match="tenants.toml") as err:
        parse_tenants(data, "tenants.toml", tmp_path)
    assert says in str(err.value)


def test_two_tenants_never_share_a_state_store(tmp_path: Path) -> None:
    data = good("a")
    data["tenants"]["b"] = dict(data["tenants"]["a"], inbox="/x", outbox="/y")  # type: ignore[index]
    with pytest.raises(ConfigError, match="tenants a and b have the same state"):
        parse_tenants(data, "tenants.toml", tmp_path)


def test_a_tenants_bad_cmi_toml_is_refused_at_deploy(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[functions]\ncmi_multi = true\n")
    with pytest.raises(ConfigError, match="cmi_multi"):
        parse_tenants(good(config=str(tmp_path / "bad.toml")), "tenants.toml", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        parse_tenants(good(config=str(tmp_path / "none.toml")), "tenants.toml", tmp_path)


def test_cmi_deploy_with_a_wrong_tenants_file_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "tenants.toml").write_text('[tenants."no way"]\ninbox = "i"\n')
    result = runner.invoke(app, ["deploy", "--tenants", str(tmp_path / "tenants.toml")])
    assert result.exit_code == 2, result.output
    assert "1 to 35" in result.output and "Traceback" not in result.output
    missing = runner.invoke(app, ["deploy", "--tenants", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    broken = tmp_path / "broken.toml"
    broken.write_text("[tenants.acme\n")
    result = runner.invoke(app, ["deploy", "--tenants", str(broken)])
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_the_schedule_follows_daylight_saving_of_its_time_zone() -> None:
    """`0 2 * * *` in Europe/Berlin runs at 02:00 local time all year: 01:00 UTC in winter,
    00:00 UTC in summer; on the spring-forward night (02:00 does not exist) once at 03:00,
    and on the fall-back night once, not twice."""
    from prefect.server.schemas.schedules import CronSchedule

    from flows.prefect_deploy import _schedule

    cron = _schedule("0 2 * * *", "Europe/Berlin")
    server_side = CronSchedule(cron=cron.cron, timezone=cron.timezone)

    def utc(start: dt.datetime, n: int) -> list[str]:
        got = asyncio.run(server_side.get_dates(n=n, start=start))
        return [d.astimezone(dt.UTC).strftime("%m-%dT%H:%M") for d in got]

    assert utc(dt.datetime(2027, 3, 26, 12, tzinfo=dt.UTC), 4) == [
        "03-27T01:00", "03-28T01:00", "03-29T00:00", "03-30T00:00"]  # fmt: skip
    assert utc(dt.datetime(2027, 10, 29, 12, tzinfo=dt.UTC), 4) == [
        "10-30T00:00", "10-31T00:00", "11-01T01:00", "11-02T01:00"]  # fmt: skip


def test_a_tenants_clock_is_its_own_time_zone() -> None:
    """A tenant's night at 02:00 Berlin time is run 2026…T0200xx wherever the worker is."""
    from flows.nightly import run_clock

    for zone in ("Europe/Berlin", "America/New_York", "Asia/Tokyo"):
        want = dt.datetime.now(ZoneInfo(zone)).replace(tzinfo=None)
        assert abs((run_clock(None, zone) - want).total_seconds()) < 5
    assert run_clock("2026-11-23T02:00:00", "Asia/Tokyo") == dt.datetime(2026, 11, 23, 2)


def test_an_unchanged_crash_automation_compares_equal_whatever_its_sets_order() -> None:
    """`cmi deploy` leaves an identical automation alone (an update drops the heartbeats its
    trigger waits on: a night lost just before would never be marked Crashed).  The server
    hands the trigger's sets back in its own order, which is not this process's."""
    from prefect.events.schemas.automations import AutomationCore

    from flows.prefect_deploy import _comparable, canonical, zombie_automation

    data = zombie_automation().model_dump(mode="json")
    shuffled = {**data, "trigger": {**data["trigger"]}}
    for key in ("after", "expect"):
        shuffled["trigger"][key] = sorted(data["trigger"][key], reverse=True)
    assert shuffled["trigger"]["expect"] != sorted(data["trigger"]["expect"])
    assert canonical(shuffled) == canonical(data)
    assert _comparable(AutomationCore.model_validate(shuffled)) == _comparable(zombie_automation())
    changed = {**data, "trigger": {**data["trigger"], "within": 120.0}}
    assert canonical(changed) != canonical(data)
    assert canonical({"actions": [{"type": "a"}, {"type": "b"}]}) != canonical(
        {"actions": [{"type": "b"}, {"type": "a"}]}
    )  # a list of actions keeps its order


def test_a_night_started_before_its_schedule_reads_its_clock_at_the_scheduled_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker may start a scheduled run early (it fetches runs ahead): the clock the run
    id and as-of come from is never before the scheduled time. The scheduled time is given
    through Prefect's runtime table (its own advice: this field cannot be set by an
    environment variable); a real early start is in the e2e schedule test."""
    import datetime as dt

    from prefect.runtime import flow_run

    from flows import nightly

    scheduled = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    monkeypatch.setitem(flow_run.FIELDS, "scheduled_start_time", lambda: scheduled)
    clock = nightly._clock_of({"as_of": None, "timezone": "UTC", "tenant": "early-test"})
    nightly._clocks.clear()
    assert clock >= scheduled.replace(tzinfo=None, microsecond=0), (clock, scheduled)
    # a clock given (--as-of) is never held
    given = nightly._clock_of({"as_of": "2026-11-23T02:00:00", "timezone": None, "tenant": "x"})
    nightly._clocks.clear()
    assert given == dt.datetime(2026, 11, 23, 2, 0)
