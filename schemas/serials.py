"""Contracts of the serial files: pool, generation, assignment, returns, exports, requests (SPEC §5)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas import checks
from schemas.base import optional, required, valid_where, valid_where_distinct
from schemas.master_data import CMO_ID_ERROR, GTIN_ERROR

QUANTITY_ERROR = (
    "quantity|quantity must be a positive whole number (digits only, at most 18 digits), "
    "not '{value}'"
)


class SerialPoolFile(pa.DataFrameModel):
    """`serial_pool_*.csv` (§5.1)."""

    product_code: str = required()
    serial: str = required()

    @pa.check("product_code", error=GTIN_ERROR)
    def _product_code(cls, data):  # type: ignore[no-untyped-def]
        return valid_where_distinct(data, checks.gtin14(pl.col(data.key)))

    @pa.check(
        "serial",
        error="serial|serial '{value}' must be 1-20 characters of the GS1 character set 82 (AI 21)",
    )
    def _serial(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.serial(pl.col(data.key)))


class _ProductQuantity(pa.DataFrameModel):
    product_code: str = required()
    quantity: str = required()

    @pa.check("product_code", error=GTIN_ERROR)
    def _product_code(cls, data):  # type: ignore[no-untyped-def]
        return valid_where_distinct(data, checks.gtin14(pl.col(data.key)))

    @pa.check("quantity", error=QUANTITY_ERROR)
    def _quantity(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.positive_int(pl.col(data.key)))


class SerialGenerateFile(_ProductQuantity):
    """`serial_generate_*.csv` (§5.2)."""


class _CmoProductQuantity(_ProductQuantity):
    cmo_id: str = required()

    @pa.check("cmo_id", error=CMO_ID_ERROR)
    def _cmo_id(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.cmo_id(pl.col(data.key)))


class AssignmentsFile(_CmoProductQuantity):
    """`assignments_*.csv` (§5.3)."""


class ExportsFile(_CmoProductQuantity):
    """`exports_*.csv` (§5.4)."""

    allow_already_exported: str = optional()

    @pa.check(
        "allow_already_exported",
        error="boolean|allow_already_exported must be Y/N, YES/NO, TRUE/FALSE or 1/0, not '{value}'",
    )
    def _allow(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.boolean(pl.col(data.key)))


class PartnerRequestsFile(_CmoProductQuantity):
    """`partner_requests_*.csv` (§5.5)."""

    request_id: str = required()

    @pa.check(
        "request_id",
        error="request_id|request_id '{value}' must be 1-64 characters of A-Z a-z 0-9 . _ - "
        "starting with a letter or a digit",
    )
    def _request_id(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.request_id(pl.col(data.key)))


class SerialReturnsFile(pa.DataFrameModel):
    """`serial_returns_*.csv` (§5.6): quantity is a positive whole number or ALL."""

    cmo_id: str = required()
    product_code: str = required()
    quantity: str = required()

    @pa.check("cmo_id", error=CMO_ID_ERROR)
    def _cmo_id(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, checks.cmo_id(pl.col(data.key)))

    @pa.check("product_code", error=GTIN_ERROR)
    def _product_code(cls, data):  # type: ignore[no-untyped-def]
        return valid_where_distinct(data, checks.gtin14(pl.col(data.key)))

    @pa.check(
        "quantity",
        error="quantity|quantity must be ALL or a positive whole number (digits only, at most 18 "
        "digits), not '{value}'",
    )
    def _quantity(cls, data):  # type: ignore[no-untyped-def]
        col = pl.col(data.key)
        return valid_where(data, checks.positive_int(col) | (col.str.to_uppercase() == "ALL"))
