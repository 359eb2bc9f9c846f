"""Contracts of the TraceLink shipping side (SPEC §6, §10).

- The three shipping reports as Pandera models, columns exactly as §10:
  `ShippingReconciliationReport`, `ShippingExceptionsReport`, `LotReconciliationReport`.
- The staging tables that the EPCIS parser (`connectors.epcis`) fills and the
  shipping rules (`transforms.shipping`) read, and `DocumentInfo`, what the
  parser learnt about a document besides its staged rows.  They sit here, between
  the two, so that `transforms` never imports `connectors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import pandera.polars as pa
import polars as pl

OUTCOMES = [
    "OK",
    "UNKNOWN_SERIAL",
    "ALREADY_SHIPPED",
    "NOT_PRODUCEABLE",
    "NOT_ASSIGNED",
    "OTHER_CMO",
]
"""SGTIN outcomes in order of precedence (§6); `OK` last in effect, first here for reading."""

OCCURRENCE_OUTCOMES = ["UNKNOWN_CONTAINER", "MALFORMED_EPC", "MALFORMED_EXPIRY"]
EVENT_KINDS = ["commissioning", "aggregation", "shipping", "decommissioning"]


class ShippingReconciliationReport(pa.DataFrameModel):
    """`shipping_reconciliation.csv` (run report): one row per shipping file."""

    file: str
    sender_cmo_id: str = pa.Field(nullable=True)
    events_read: pl.Int64 = pa.Field(ge=0)
    events_skipped: pl.Int64 = pa.Field(ge=0)
    commissioned: pl.Int64 = pa.Field(ge=0)
    shipped: pl.Int64 = pa.Field(ge=0)
    decommissioned: pl.Int64 = pa.Field(ge=0)
    ok: pl.Int64 = pa.Field(ge=0)
    unknown_serial: pl.Int64 = pa.Field(ge=0)
    already_shipped: pl.Int64 = pa.Field(ge=0)
    not_produceable: pl.Int64 = pa.Field(ge=0)
    not_assigned: pl.Int64 = pa.Field(ge=0)
    other_cmo: pl.Int64 = pa.Field(ge=0)
    unknown_container: pl.Int64 = pa.Field(ge=0)
    malformed_epc: pl.Int64 = pa.Field(ge=0)

    class Config:
        strict = True
        ordered = True

    @pa.dataframe_check(
        error="the six SGTIN outcomes must add up to commissioned + shipped + decommissioned"
    )
    def _outcomes_add_up(cls, data):  # type: ignore[no-untyped-def]
        total = (
            pl.col("ok")
            + pl.col("unknown_serial")
            + pl.col("already_shipped")
            + pl.col("not_produceable")
            + pl.col("not_assigned")
            + pl.col("other_cmo")
        )
        reported = pl.col("commissioned") + pl.col("shipped") + pl.col("decommissioned")
        return data.lazyframe.select(total == reported)


class ShippingExceptionsReport(pa.DataFrameModel):
    """`shipping_exceptions.csv` (run report): one row per non-`OK` outcome or occurrence."""

    file: str
    event_index: pl.Int64 = pa.Field(ge=1)
    event_kind: str = pa.Field(isin=EVENT_KINDS)
    product_code: str = pa.Field(nullable=True)
    serial: str = pa.Field(nullable=True)
    epc: str
    outcome: str = pa.Field(isin=OUTCOMES[1:] + OCCURRENCE_OUTCOMES)

    class Config:
        strict = True
        ordered = True


class LotReconciliationReport(pa.DataFrameModel):
    """`lot_reconciliation.csv` (state report): per lot of commissioning."""

    cmo_id: str = pa.Field(nullable=True)
    product_code: str
    lot: str
    expiry: pl.Date = pa.Field(nullable=True)
    commissioned: pl.Int64 = pa.Field(ge=0)
    shipped: pl.Int64 = pa.Field(ge=0)
    decommissioned: pl.Int64 = pa.Field(ge=0)
    exceptions: pl.Int64 = pa.Field(ge=0)

    class Config:
        strict = True
        ordered = True


SHIPPING_RECONCILIATION_COLUMNS = list(ShippingReconciliationReport.to_schema().columns)
SHIPPING_EXCEPTIONS_COLUMNS = list(ShippingExceptionsReport.to_schema().columns)
LOT_RECONCILIATION_COLUMNS = list(LotReconciliationReport.to_schema().columns)
SHIPPING_EXCEPTIONS_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "event_index": pl.Int64(),
    "event_kind": pl.String(),
    "product_code": pl.String(),
    "serial": pl.String(),
    "epc": pl.String(),
    "outcome": pl.String(),
}

# ------------------------------------------------------------------ staging (parser → rules)

STAGE_EVENTS = "stage_epcis_event"
STAGE_EPCS = "stage_epcis_epc"
STAGE_PARTIES = "stage_epcis_party"

# One-byte enums instead of strings: a document's millions of staged and working rows
# (the EPCs, their expansion, their outcomes) stay in DuckDB's memory until its
# reconciliation is done, and the 2M-SGTIN bench document spilled to disk.
EPC_SCHEME_TYPE = "ENUM('malformed', 'sgtin', 'sscc', 'sgln', 'other')"
EVENT_KIND_TYPE = "ENUM('commissioning', 'shipping', 'decommissioning', 'aggregation')"

STAGING_DDL = [
    # One row per ObjectEvent / AggregationEvent (other event types are only counted).
    f"""CREATE OR REPLACE TEMP TABLE {STAGE_EVENTS} (
        event_index INTEGER,   -- position among all events of the document, from 1
        event_type VARCHAR,    -- ObjectEvent | AggregationEvent
        action VARCHAR,        -- ADD | OBSERVE | DELETE
        biz_step VARCHAR,      -- bare CBV word: commissioning, shipping, packing, ...
        parent_id VARCHAR,     -- AggregationEvent parentID
        read_point VARCHAR, biz_location VARCHAR,
        lot VARCHAR, expiry VARCHAR,
        -- derived as staged: the expiry as a date (NULL if it is none), the event's kind
        -- (`transforms.shipping.event_kind_sql`), the parent's scheme and identity key
        expiry_date DATE, kind {EVENT_KIND_TYPE}, parent_scheme VARCHAR, parent_key UHUGEINT)""",
    # One row per <epc> of any event's EPC list (trimmed), parsed by
    # `transforms.epc.parse_epcs_frame` as it is staged, with its identity key
    # (`transforms.epc.epc_key_sql`).
    f"""CREATE OR REPLACE TEMP TABLE {STAGE_EPCS} (
        event_index INTEGER, epc VARCHAR,
        epc_scheme {EPC_SCHEME_TYPE},
        product_code VARCHAR, serial VARCHAR, epc_key UHUGEINT)""",
    f"""CREATE OR REPLACE TEMP TABLE {STAGE_PARTIES} (
        event_index INTEGER, role VARCHAR,  -- source | destination
        type VARCHAR, id VARCHAR)""",
]


class SourceParty(NamedTuple):
    """A source of a read event (its `sourceList`), as written."""

    event_type: str  # ObjectEvent | AggregationEvent
    biz_step: str | None  # the bare CBV word
    type: str | None  # owning_party, location, ... (bare)
    id: str


@dataclass
class DocumentInfo:
    """What the parser learnt about one EPCIS document besides the staged rows: counts,
    the SBDH sender, every distinct source of the read events and every event's
    bizLocation then readPoint (`location_candidates`) — first occurrences, in document
    order: what the sender rule (`transforms.shipping.sender_candidates`) looks at."""

    file: str
    namespace: str  # the XML namespace of the EPCISDocument ("" for JSON-LD)
    schema_version: str | None
    syntax: str = "xml"  # xml | jsonld
    sbdh_sender: str | None = None  # the SBDH sender, or a JSON-LD document's `sender`
    sbdh_sender_authority: str | None = None
    events_read: int = 0
    events_skipped: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    epcs_staged: int = 0
    sources: list[SourceParty] = field(default_factory=list)
    location_candidates: list[str] = field(default_factory=list)

    @property
    def epcis_version(self) -> str:
        if self.syntax == "jsonld":
            return "2.0"
        return "2.0" if self.namespace.endswith(":2") else "1.2"
