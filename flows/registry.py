"""Which contract and which rule handle each CSV file kind (SPEC §3 table)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.contracts import (
    ContractKeysFile,
    ContractLinesFile,
    ContractsFile,
    OrdersFile,
    ReceiptsFile,
)
from schemas.master_data import CmosFile, PartnershipsFile, ProductsFile
from schemas.serials import (
    AssignmentsFile,
    ExportsFile,
    PartnerRequestsFile,
    SerialGenerateFile,
    SerialPoolFile,
    SerialReturnsFile,
)
from transforms import allocation, contracts, master_data, serials


@dataclass(frozen=True)
class CsvKind:
    model: Any  # a pandera DataFrameModel class
    apply: Callable[..., Any]


def csv_kinds() -> dict[str, CsvKind]:
    return {
        "products": CsvKind(ProductsFile, master_data.apply_products),
        "cmos": CsvKind(CmosFile, master_data.apply_cmos),
        "partnerships": CsvKind(PartnershipsFile, master_data.apply_partnerships),
        "serial_pool": CsvKind(SerialPoolFile, serials.apply_serial_pool),
        "serial_generate": CsvKind(SerialGenerateFile, serials.apply_serial_generate),
        "assignments": CsvKind(AssignmentsFile, serials.apply_assignments),
        "serial_returns": CsvKind(SerialReturnsFile, serials.apply_serial_returns),
        "contract_keys": CsvKind(ContractKeysFile, contracts.apply_contract_keys),
        "contracts": CsvKind(ContractsFile, contracts.apply_contracts),
        "contract_lines": CsvKind(ContractLinesFile, contracts.apply_contract_lines),
        "receipts": CsvKind(ReceiptsFile, contracts.apply_receipts),
        "orders": CsvKind(OrdersFile, allocation.apply_orders),
        "partner_requests": CsvKind(PartnerRequestsFile, serials.apply_partner_requests),
        "exports": CsvKind(ExportsFile, serials.apply_exports),
    }
