"""One tenant's realistic night for the tenants benchmark (SPEC §11): every side at once.

At scale 1: a 2,000,000-serial pool (the 200,000 SGTINs of the night's shipping document
among them) for 6 products and 4 CMOs, 400,000 serials assigned and 160,000 exported in
16 files, the CMO's 200,000-SGTIN EPCIS shipping document (commissioning, packing,
shipping), 10 wholesaler buffer-stock contracts over 50 items and 100,000 sales order
lines.  Built from the other benchmarks' generators (`serials_gen`, `epcis_gen`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from bench import epcis_gen, serials_gen
from transforms.codes import gs1_check_digit
from transforms.epc import parse_epc

CMOS = ["CMO1", "CMO2", "CMO3", "CMO4"]


def _items(n: int) -> list[str]:
    return [(b := f"08{i:011d}") + gs1_check_digit(b) for i in range(1, n + 1)]


def write_night(inbox: Path, scale: float = 1.0, as_of: dt.date = dt.date(2026, 11, 23)) -> dict[str, int]:  # fmt: skip
    """Write the night's files into `inbox`; returns its sizes."""
    inbox.mkdir(parents=True, exist_ok=True)
    serials, sgtins = int(2_000_000 * scale), int(200_000 * scale)
    order_lines, items = int(100_000 * scale), 50
    shape = epcis_gen.Shape(sgtins)
    unit_gtin, case_gtin = (
        parse_epc(f"urn:epc:id:sgtin:{epcis_gen.COMPANY_PREFIX}.{ref}.1").product_code
        for ref in (epcis_gen.UNIT_ITEM_REF, epcis_gen.CASE_ITEM_REF)
    )
    bench_products = serials_gen.products(4)
    items_ = _items(items)
    products = [unit_gtin, case_gtin, *bench_products]
    pl.DataFrame({"product_code": products + items_,
                  "product_name": [f"Product {p}" for p in products + items_]}
                 ).write_csv(inbox / "products_night.csv")  # fmt: skip
    pl.DataFrame({
        "cmo_id": CMOS, "cmo_name": [f"Maker {c}" for c in CMOS], "city": ["Basel"] * 4,
        "country": ["CH"] * 4, "produceable_products": [";".join(products)] * 4,
        "sgln": [epcis_gen.SENDER_SGLN, "", "", ""],
    }).write_csv(inbox / "cmos_night.csv")  # fmt: skip
    # the pool: the document's SGTINs, then the other products' serials
    shipped = epcis_gen.serials_frame(shape).select(
        pl.when(pl.col("item_ref") == epcis_gen.UNIT_ITEM_REF)
        .then(pl.lit(unit_gtin))
        .otherwise(pl.lit(case_gtin))
        .alias("product_code"),
        "serial",
    )
    rest = inbox / "serial_pool_night_b.csv"
    serials_gen.write_pool(rest, bench_products, max(4, serials - shipped.height))
    shipped.write_csv(inbox / "serial_pool_night_a.csv")
    per_pair = int(25_000 * scale) or 1
    pl.DataFrame({
        "cmo_id": ["CMO1", "CMO1"] + [c for c in CMOS for _ in bench_products],
        "product_code": [unit_gtin, case_gtin] + bench_products * len(CMOS),
        "quantity": [shape.units, shape.cases] + [per_pair] * (len(CMOS) * len(bench_products)),
    }).write_csv(inbox / "assignments_night.csv")  # fmt: skip
    exports = [(c, p) for c in CMOS for p in bench_products]
    for k, (cmo, product) in enumerate(exports):
        pl.DataFrame({"cmo_id": [cmo], "product_code": [product],
                      "quantity": [max(1, per_pair * 2 // 5)], "allow_already_exported": ["N"]}
                     ).write_csv(inbox / f"exports_night_{k:02d}.csv")  # fmt: skip
    epcis_gen.write_document(inbox / "shipping_night.xml", shape)
    # contracts: wholesaler buffer stock (initialized at activation), 5 lines each
    contracts = [f"WBS-{k:02d}" for k in range(10)]
    pl.DataFrame({
        "contract_id": contracts, "description": [f"Buffer stock {c}" for c in contracts],
        "contract_type": ["WBS"] * 10, "supplier": ["SUP-A"] * 10, "currency": ["EUR"] * 10,
        "handler": ["ANNA"] * 10, "responsible": ["BORIS"] * 10, "warehouse": ["W1"] * 10,
        "active": ["Y"] * 10,
    }).write_csv(inbox / "contracts_night.csv")  # fmt: skip
    per_line = max(10, order_lines * 6 // (len(contracts) * 5))  # ~ the demand, so some close
    pl.DataFrame({
        "contract_id": [c for c in contracts for _ in range(5)],
        "line_no": [n for _ in contracts for n in range(1, 6)],
        "item": items_, "contract_quantity": [per_line] * items,
    }).write_csv(inbox / "contract_lines_night.csv")  # fmt: skip
    i = pl.int_range(0, order_lines, eager=True)
    pl.DataFrame({
        "order_no": ("SO-" + (i // 5).cast(pl.String).str.zfill(7)),
        "order_line": (i % 5 + 1),
        "order_date": [as_of.isoformat()] * order_lines,
        "customer": "C" + (i * 7 % 500).cast(pl.String),
        "item": pl.Series(items_)[(i * 13) % items],
        "quantity": (i * 31 % 10 + 1),
    }).write_csv(inbox / "orders_night.csv")  # fmt: skip
    return {"serials": serials, "sgtins": shape.total_sgtins, "order_lines": order_lines}
