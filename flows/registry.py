"""Which contract and which rule handle each CSV file kind (SPEC §3 table).

Kinds whose module is not installed yet stay in the inbox with "not yet supported".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.master_data import CmosFile, PartnershipsFile, ProductsFile
from schemas.serials import (
    AssignmentsFile,
    ExportsFile,
    PartnerRequestsFile,
    SerialGenerateFile,
    SerialPoolFile,
    SerialReturnsFile,
)
from transforms import master_data, serials


@dataclass(frozen=True)
class CsvKind:
    model: Any  # a pandera DataFrameModel class
    apply: Callable[..., Any]


def _optional(schema_mod: str, model: str, rule_mod: str, fn: str) -> CsvKind | None:
    try:
        return CsvKind(
            getattr(importlib.import_module(schema_mod), model),
            getattr(importlib.import_module(rule_mod), fn),
        )
    except (ModuleNotFoundError, AttributeError):
        return None


def csv_kinds() -> dict[str, CsvKind]:
    kinds: dict[str, CsvKind | None] = {
        "products": CsvKind(ProductsFile, master_data.apply_products),
        "cmos": CsvKind(CmosFile, master_data.apply_cmos),
        "partnerships": CsvKind(PartnershipsFile, master_data.apply_partnerships),
        "serial_pool": CsvKind(SerialPoolFile, serials.apply_serial_pool),
        "serial_generate": CsvKind(SerialGenerateFile, serials.apply_serial_generate),
        "assignments": CsvKind(AssignmentsFile, serials.apply_assignments),
        "serial_returns": CsvKind(SerialReturnsFile, serials.apply_serial_returns),
        "contract_keys": _optional(
            "schemas.contracts", "ContractKeysFile", "transforms.contracts", "apply_contract_keys"
        ),
        "contracts": _optional(
            "schemas.contracts", "ContractsFile", "transforms.contracts", "apply_contracts"
        ),
        "contract_lines": _optional(
            "schemas.contracts", "ContractLinesFile", "transforms.contracts", "apply_contract_lines"
        ),
        "receipts": _optional(
            "schemas.contracts", "ReceiptsFile", "transforms.contracts", "apply_receipts"
        ),
        "orders": _optional(
            "schemas.contracts", "OrdersFile", "transforms.allocation", "apply_orders"
        ),
        "partner_requests": CsvKind(PartnerRequestsFile, serials.apply_partner_requests),
        "exports": CsvKind(ExportsFile, serials.apply_exports),
    }
    return {k: v for k, v in kinds.items() if v is not None}
