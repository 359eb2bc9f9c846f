"""Date-times in the inbox files are ISO 8601 (SPEC §3.1 "Date-times: ISO 8601"; §4.3
`event_time`): the extended format (2024-05-01T07:00:00) and the basic format
(20240501T070000) are both ISO 8601, and the spec names no one of them — unlike dates,
which it narrows to `YYYY-MM-DD`."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from helpers_serials import rows

from schemas.base import validate_rows
from schemas.master_data import PartnershipsFile
from tests.pipeline_helpers import csv, report, run_day


def _event_time_rejected(value: str) -> bool:
    frame = rows(cmo_id="C1", event="invite", event_time=value)
    return validate_rows(PartnershipsFile, frame)[1].height > 0


@pytest.mark.parametrize(
    "value",
    [
        "20240501T070000",  # basic format
        "20240501T0700",
        "20240501T070000Z",
        "20240501T070000+0200",
        "20240501T070000-05",
        "20240501T070000.250",
        "20240501T070000,5",  # ISO 8601's own decimal sign
        "20240501",
        "20240229T235960Z",  # a leap day, a leap second
        "2024-05-01T07:00:00",  # extended format, as before
        "2024-05-01 07:00:00",
        "2024-05-01T07:00:00.123+02:00",
        "2024-05-01T07:00:00+02",
        "2024-05-01",
    ],
)
def test_an_iso_8601_date_time_in_either_format_is_accepted(value: str) -> None:
    assert not _event_time_rejected(value)


@pytest.mark.parametrize(
    "value",
    [
        "20260230T070000",  # no such day
        "20261301T070000",
        "20240501T240000",
        "20240501T076000",
        "20240501T070000+2500",
        "20240501 070000",  # the basic format needs its T
        "20240501T07:00:00",  # the formats mixed: basic date, extended time
        "2024-05-01T070000",  # extended date, basic time
        "20240501T070000+02:00",
        "2024051T070000",
        "202405011T0700",
        "yesterday",
    ],
)
def test_a_value_that_is_no_iso_8601_date_time_is_rejected(value: str) -> None:
    assert _event_time_rejected(value)


def test_the_message_names_both_formats() -> None:
    rejects = validate_rows(
        PartnershipsFile, rows(cmo_id="C1", event="invite", event_time="1.5.2024 07:00")
    )[1]
    assert rejects.select("column", "value").row(0) == ("event_time", "1.5.2024 07:00")
    message = rejects.get_column("message")[0]
    assert "YYYY-MM-DDTHH:MM:SS" in message and "YYYYMMDDTHHMMSS" in message


def test_a_partnership_with_a_basic_format_event_time_is_applied(tmp_path: Path) -> None:
    """The whole run: the invitation dated in the basic format moves the partnership to
    `pending` (cmos.csv), with no reject."""
    files = {
        "cmos_a.csv": csv("cmo_id,cmo_name,city,country", "ACME,Acme,Berlin,DE"),
        "partnerships_a.csv": csv(
            "cmo_id,event,contact_email,event_time", "ACME,invite,ops@acme.example,20240501T070000"
        ),
    }
    out = run_day(tmp_path, "2024-05-01T08:00:00", files)
    assert report(tmp_path, out["run_id"], "rejects.csv").splitlines()[1:] == []
    cmos = pl.read_csv(
        tmp_path / "outbox" / "reports" / out["run_id"] / "cmos.csv", infer_schema=False
    )
    assert cmos.filter(pl.col("cmo_id") == "ACME").get_column("partnership_status").to_list() == [
        "pending"
    ]
