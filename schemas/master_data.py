"""Contracts of the master-data files: products, CMOs, partnerships (SPEC §4)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas.base import optional, required, valid_where
from transforms.codes import CMO_ID_PATTERN, is_gtin14_expr


class ProductsFile(pa.DataFrameModel):
    """`products_*.csv` (§4.1)."""

    product_code: str = required()
    product_name: str = required()
    stock_unit: str = optional()

    @pa.check("product_code", error="gtin14|{value} is not a GTIN-14 (14 digits with a valid GS1 check digit)")
    def _product_code(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, is_gtin14_expr(pl.col(data.key)))

    @pa.check("product_name", error="length|product_name must have 1 to 100 characters")
    def _product_name(cls, data):  # type: ignore[no-untyped-def]
        return valid_where(data, pl.col(data.key).str.len_chars() <= 100)


__all__ = ["ProductsFile", "CMO_ID_PATTERN"]
