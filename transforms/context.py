"""The typed objects handed to every rule: configuration, the run's clock, a file's result."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from transforms.rejects import empty_rejects


@dataclass(frozen=True)
class FunctionsConfig:
    """The "Function control file" switches of the CMI guide (SPEC §2 `[functions]`)."""

    cmi_mult: bool = False
    icfullqt: bool = False
    cmi_bath: bool = False


@dataclass(frozen=True)
class SerialsConfig:
    """In-house serial generation (SPEC §2 `[serials]`, §5.2)."""

    generated_length: int = 12
    generated_charset: str = "numeric"
    min_randomness_factor: int = 10000


@dataclass(frozen=True)
class InboxConfig:
    settle_seconds: float = 5.0  # a float default: the config reader types keys by their default


@dataclass(frozen=True)
class ReportsConfig:
    """Reports for people (SPEC §2 `[reports]`, §5.4, §10.1)."""

    html: bool = True
    xlsx: bool = True
    partner_xlsx: bool = False


NOTIFY_EVENTS = ("failure", "quarantine", "rejects", "success")


@dataclass(frozen=True)
class NotifyConfig:
    """Who hears about a night that needs a person (SPEC §2 `[notify]`, §11): Apprise URLs."""

    urls: tuple[str, ...] = ()
    on: tuple[str, ...] = ("failure", "quarantine")


@dataclass(frozen=True)
class DeliveryTarget:
    """Where one CMO's export files and partner answers are delivered (SPEC §2 `[delivery.<cmo_id>]`,
    §8.1).  `password_env` names an environment variable: the secret itself is never held here."""

    cmo_id: str
    url: str
    key_file: str | None = None
    password_env: str | None = None
    known_hosts: str | None = None


@dataclass(frozen=True)
class Config:
    functions: FunctionsConfig = field(default_factory=FunctionsConfig)
    serials: SerialsConfig = field(default_factory=SerialsConfig)
    inbox: InboxConfig = field(default_factory=InboxConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    delivery: tuple[DeliveryTarget, ...] = ()  # in cmo_id order

    def delivery_for(self, cmo_id: str) -> DeliveryTarget | None:
        """The delivery target of a CMO, or None when its files stay in the outbox."""
        return next((t for t in self.delivery if t.cmo_id == cmo_id), None)


@dataclass(frozen=True)
class RunContext:
    """What a rule may know about the run: its id, its clock and the file at hand."""

    run_id: str
    as_of: dt.datetime
    config: Config = field(default_factory=Config)
    source_file: str = ""

    @property
    def business_date(self) -> dt.date:
        return self.as_of.date()

    def for_file(self, name: str) -> RunContext:
        return RunContext(self.run_id, self.as_of, self.config, name)


@dataclass
class FileResult:
    """What applying one file's valid rows did: its rejects, how many rows took effect, warnings."""

    rejects: pl.DataFrame = field(default_factory=empty_rejects)
    rows_applied: int = 0
    warnings: list[str] = field(default_factory=list)
    # recorded files asked for again (a repeated partner request, §5.5): the flow has them
    # written and delivered again when they are no longer in the outbox
    asked_again: list[int] = field(default_factory=list)
