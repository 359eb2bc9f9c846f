"""Contracts of the master-data files: products, CMOs, partnerships (SPEC §4)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas import checks
from schemas.base import optional, required, valid_where, valid_where_distinct

GTIN_ERROR = "gtin14|{value} is not a GTIN-14 (14 digits with a valid GS1 check digit)"
CMO_ID_ERROR = (
    "cmo_id|cmo_id '{value}' must be 1-35 characters of A-Z a-z 0-9 . _ - starting with a "
    "letter or a digit"
)


class ProductsFile(pa.DataFrameModel):
    """`products_*.csv` (§4.1): upsert by product_code."""

    product_code: str = required()
    product_name: str = required()
    stock_unit: str = optional()

    @pa.check("product_code", error=GTIN_ERROR)
    def _product_code(cls, data):  # type: ignore[no-untyped-def]
        return valid_where_distinct(data, checks.gtin14(pl.col(data.key)))

    @pa.check("product_name", error="length|product_name must have 1 to 100 characters")
    def _product_name(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.max_len(pl.col(data.key), 100))

    @pa.check("stock_unit", error="length|stock_unit must have 1 to 20 characters")
    def _stock_unit(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.max_len(pl.col(data.key), 20))


class CmosFile(pa.DataFrameModel):
    """`cmos_*.csv` (§4.2): upsert or soft delete by cmo_id."""

    action: str = optional()
    cmo_id: str = required()
    cmo_name: str = optional()
    street1: str = optional()
    street2: str = optional()
    street3: str = optional()
    city: str = optional()
    state: str = optional()
    zip_code: str = optional()
    country: str = optional()
    produceable_products: str = optional()
    collaboration_channel: str = optional()
    sgln: str = optional()

    @pa.check("action", error="action|action must be upsert or delete, not '{value}'")
    def _action(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.one_of(pl.col(data.key), "upsert", "delete"))

    @pa.check("cmo_id", error=CMO_ID_ERROR)
    def _cmo_id(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.cmo_id(pl.col(data.key)))

    @pa.check("cmo_name", error="length|cmo_name must have 1 to 80 characters")
    def _cmo_name(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.max_len(pl.col(data.key), 80))

    @pa.check(
        "country",
        error="country|country '{value}' is not an ISO 3166-1 alpha-2 code (e.g. DE, FR, US)",
    )
    def _country(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.country(pl.col(data.key)))

    @pa.check(
        "sgln",
        error="sgln|sgln '{value}' must be <company prefix>.<location reference>.<extension or 0> "
        "with prefix and reference together 12 digits, e.g. 1234567.00012.0",
    )
    def _sgln(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.sgln(pl.col(data.key)))


class PartnershipsFile(pa.DataFrameModel):
    """`partnerships_*.csv` (§4.3): partnership events."""

    cmo_id: str = required()
    event: str = required()
    contact_email: str = optional()
    tenant: str = optional()
    payment_model: str = optional()
    event_time: str = optional()

    @pa.check("cmo_id", error=CMO_ID_ERROR)
    def _cmo_id(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.cmo_id(pl.col(data.key)))

    @pa.check("event", error="event|event must be invite, accept, cancel or remove, not '{value}'")
    def _event(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(
            data, checks.one_of(pl.col(data.key), "invite", "accept", "cancel", "remove")
        )

    @pa.check("contact_email", error="email|contact_email '{value}' is not a valid e-mail address")
    def _email(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.email(pl.col(data.key)))

    @pa.check(
        "payment_model",
        error="payment_model|payment_model must be customer or partner, not '{value}'",
    )
    def _payment_model(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.one_of(pl.col(data.key), "customer", "partner"))

    @pa.check(
        "event_time",
        error="datetime|event_time '{value}' is not an ISO 8601 date-time "
        "(YYYY-MM-DDTHH:MM:SS or YYYYMMDDTHHMMSS)",
    )
    def _event_time(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.iso_datetime(pl.col(data.key)))
