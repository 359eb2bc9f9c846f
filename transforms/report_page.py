"""What `report.html` shows (SPEC §10.1), prepared from the run's reports: pure functions
from the report frames (as `connectors.report_files` reads them back from the CSVs) and
the run summary to the page's sections.  Nothing here reads a file or a clock; the page
is written by `connectors.report_html`.

Every figure is taken from the CSVs or counted from their rows, so the page can never
say something the CSVs do not.  Charts get aggregates (a few rows per CMO, reason or
document), never one point per serial or order line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

SHIPPING_OUTCOMES = [
    ("ok", "OK"), ("unknown_serial", "UNKNOWN_SERIAL"), ("already_shipped", "ALREADY_SHIPPED"),
    ("not_produceable", "NOT_PRODUCEABLE"), ("not_assigned", "NOT_ASSIGNED"),
    ("other_cmo", "OTHER_CMO"),
]  # fmt: skip
HOLDINGS = [
    ("assigned_not_exported", "assigned not exported"),
    ("exported", "exported"),
    ("requested", "requested"),
]
LINKED = "linked"  # the allocation "reason" of an order line linked to a contract line
_EXAMPLES = 5  # sentences shown per group of rejects (all are in rejects.csv)
_LINES = 30  # line numbers listed per group of rejects


@dataclass
class Verdict:
    good: bool
    reasons: list[str]

    @property
    def title(self) -> str:
        return "All good" if self.good else "Needs attention"


@dataclass
class RejectGroup:
    file: str
    rule: str
    count: int
    lines: str
    examples: list[dict[str, Any]]


@dataclass
class Page:
    """Everything the template shows, in page order."""

    run_id: str
    as_of: str
    verdict: Verdict
    totals: dict[str, int]
    files: list[dict[str, Any]]
    warnings: list[str]
    invariants: list[tuple[str, bool]]
    rejects: list[RejectGroup]
    rejects_total: int
    serial_balance: list[tuple[str, str, list[dict[str, Any]]]]  # (cmo_id, cmo_name, rows)
    serial_columns: list[str]
    serial_chart: pl.DataFrame  # cmo_id, status, serials
    exports: list[dict[str, Any]]
    exports_total: int
    deliveries: list[dict[str, Any]] | None
    delivery_totals: dict[str, int]
    allocation_reasons: pl.DataFrame  # reason, order_lines, quantity
    allocations_total: int
    contract_balance: list[dict[str, Any]]
    expired_lines: int
    shipping: list[dict[str, Any]]
    shipping_chart: pl.DataFrame  # file, outcome, serials
    lots: list[dict[str, Any]] = field(default_factory=list)


def _rows(frame: pl.DataFrame | None) -> list[dict[str, Any]]:
    return [] if frame is None else frame.to_dicts()


def _count(frame: pl.DataFrame | None) -> int:
    return 0 if frame is None else frame.height


def verdict(summary: dict[str, Any]) -> Verdict:
    """`All good`, or `Needs attention` and why: quarantined files, rejected rows (the run
    summary's count: rejects.csv's rows, a quarantined file's rows, a shipping document's
    SGTINs whose outcome is not OK), failed deliveries, failed invariants, warnings
    (§10.1)."""
    reasons = []
    totals = summary.get("totals", {})
    quarantined = int(totals.get("files_quarantined", 0))
    if quarantined:
        reasons.append(f"{quarantined} file(s) quarantined")
    rejected = [f for f in summary.get("files") or [] if int(f.get("rows_rejected") or 0)]
    if rejected:
        rows = sum(int(f["rows_rejected"]) for f in rejected)
        reasons.append(f"{rows} row(s) rejected in {len(rejected)} file(s)")
    failed = int((summary.get("deliveries") or {}).get("failed", 0))
    if failed:
        reasons.append(f"{failed} delivery(ies) failed")
    broken = [name for name, ok in (summary.get("invariants") or {}).items() if not ok]
    if broken:
        reasons.append("invariant(s) failed: " + ", ".join(broken))
    warnings = summary.get("warnings") or []
    if warnings:
        reasons.append(f"{len(warnings)} warning(s)")
    return Verdict(good=not reasons, reasons=reasons)


def _line_list(lines: list[int | None]) -> str:
    shown = [str(n) for n in lines[:_LINES] if n is not None]
    more = len(lines) - _LINES
    return ", ".join(shown) + (f" … and {more} more" if more > 0 else "")


def reject_groups(rejects: pl.DataFrame | None) -> list[RejectGroup]:
    """Rejects grouped by file and rule, in the order they first occur: how many, on
    which lines, and the first sentences (with line, column and value)."""
    if rejects is None or rejects.height == 0:
        return []
    groups = (
        rejects.with_row_index("_pos")
        .group_by("file", "rule", maintain_order=True)
        .agg(
            pl.len().alias("count"),
            pl.col("line").unique(maintain_order=True).alias("lines"),  # a line once
            pl.struct("line", "column", "value", "message").head(_EXAMPLES).alias("examples"),
        )
    )
    return [
        RejectGroup(
            file=g["file"],
            rule=g["rule"] or "",
            count=g["count"],
            lines=_line_list(g["lines"]),
            examples=g["examples"],
        )
        for g in groups.iter_rows(named=True)
    ]


def serial_balance_groups(
    balance: pl.DataFrame | None,
) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """The serial balance per CMO (its id and name), each with its product rows."""
    if balance is None or balance.height == 0:
        return []
    out: list[tuple[str, str, list[dict[str, Any]]]] = []
    for rec in balance.iter_rows(named=True):
        if not out or out[-1][0] != rec["cmo_id"]:
            out.append((rec["cmo_id"], rec["cmo_name"] or "", []))
        out[-1][2].append(rec)
    return out


def serial_chart(balance: pl.DataFrame | None) -> pl.DataFrame:
    """Serials each CMO holds, summed over its products, by status (assigned not exported,
    exported, requested): one bar per CMO."""
    schema = {"cmo_id": pl.String, "status": pl.String, "serials": pl.Int64}
    if balance is None or balance.height == 0:
        return pl.DataFrame(schema=schema)
    present = [(c, label) for c, label in HOLDINGS if c in balance.columns]
    sums = balance.group_by("cmo_id", maintain_order=True).agg(pl.col(c).sum() for c, _ in present)
    long = pl.concat(
        [
            sums.select(
                "cmo_id", pl.lit(label).alias("status"), pl.col(c).cast(pl.Int64).alias("serials")
            )
            for c, label in present
        ]
    )
    return long.filter(pl.col("serials") > 0).select(list(schema))


def allocation_reasons(allocations: pl.DataFrame | None) -> pl.DataFrame:
    """Order lines (and their quantity) per reason; `linked` for the ones linked to a
    contract line; most frequent first."""
    schema = {"reason": pl.String, "order_lines": pl.Int64, "quantity": pl.Int64}
    if allocations is None or allocations.height == 0:
        return pl.DataFrame(schema=schema)
    return (
        allocations.group_by(pl.col("reason").fill_null(LINKED).alias("reason"))
        .agg(pl.len().cast(pl.Int64).alias("order_lines"), pl.col("quantity").sum())
        .sort(["order_lines", "reason"], descending=[True, False])
        .select(list(schema))
    )


def this_runs_exports(exported: pl.DataFrame | None, as_of: Any) -> list[dict[str, Any]]:
    """The export files the run wrote (`created` at the run's clock)."""
    if exported is None or exported.height == 0 or "created" not in exported.columns:
        return []
    return exported.filter(pl.col("created") == as_of).to_dicts()


def shipping_rows(reconciliation: pl.DataFrame | None) -> tuple[list[dict[str, Any]], pl.DataFrame]:
    """The reconciliation row of each document, and its SGTIN outcomes for the chart."""
    schema = {"file": pl.String, "outcome": pl.String, "serials": pl.Int64}
    if reconciliation is None or reconciliation.height == 0:
        return [], pl.DataFrame(schema=schema)
    present = [(c, o) for c, o in SHIPPING_OUTCOMES if c in reconciliation.columns]
    long = pl.concat(
        [
            reconciliation.select(
                "file", pl.lit(o).alias("outcome"), pl.col(c).cast(pl.Int64).alias("serials")
            )
            for c, o in present
        ]
    ).filter(pl.col("serials") > 0)
    return reconciliation.to_dicts(), long.select(list(schema))


def lot_view(balance: pl.DataFrame | None, lots: pl.DataFrame | None) -> list[dict[str, Any]]:
    """The three-way view per CMO and product: serials assigned (the serial balance), then
    per lot commissioned, shipped (and decommissioned, exceptions) — lot_reconciliation."""
    if lots is None or lots.height == 0:
        return []
    assigned: dict[tuple[str, str], int] = {}
    if balance is not None:
        for rec in balance.select("cmo_id", "product_code", "assigned").iter_rows():
            assigned[(rec[0], rec[1])] = rec[2]
    out: list[dict[str, Any]] = []
    for key, part in lots.group_by("cmo_id", "product_code", maintain_order=True):
        cmo_id, product_code = str(key[0]), str(key[1])
        out.append(
            {
                "cmo_id": cmo_id,
                "product_code": product_code,
                "assigned": assigned.get((cmo_id, product_code)),
                "lots": part.to_dicts(),
            }
        )
    return out


def build_page(reports: dict[str, pl.DataFrame], summary: dict[str, Any], as_of: Any) -> Page:
    """The page of one run: `reports` by name (`rejects`, `serial_balance`, …), the run
    summary (`run_summary.json`), and the run's clock."""
    balance = reports.get("serial_balance")
    contract = reports.get("contract_balance")
    shipping, shipping_chart = shipping_rows(reports.get("shipping_reconciliation"))
    invariants = [(k, bool(v)) for k, v in (summary.get("invariants") or {}).items()]
    rejects = reports.get("rejects")
    return Page(
        run_id=str(summary.get("run_id", "")),
        as_of=str(summary.get("as_of", "")),
        verdict=verdict(summary),
        totals={k: int(v) for k, v in (summary.get("totals") or {}).items()},
        files=list(summary.get("files") or []),
        warnings=list(summary.get("warnings") or []),
        invariants=invariants,
        rejects=reject_groups(rejects),
        rejects_total=_count(rejects),
        serial_balance=serial_balance_groups(balance),
        serial_columns=[] if balance is None else balance.columns[4:],
        serial_chart=serial_chart(balance),
        exports=this_runs_exports(reports.get("exported_files"), as_of),
        exports_total=_count(reports.get("exported_files")),
        deliveries=None if "deliveries" not in reports else _rows(reports["deliveries"]),
        delivery_totals={k: int(v) for k, v in (summary.get("deliveries") or {}).items()},
        allocation_reasons=allocation_reasons(reports.get("allocations")),
        allocations_total=_count(reports.get("allocations")),
        contract_balance=_rows(contract),
        expired_lines=0
        if contract is None or "expired" not in contract.columns
        else int((contract.get_column("expired") == "Y").sum()),
        shipping=shipping,
        shipping_chart=shipping_chart,
        lots=lot_view(balance, reports.get("lot_reconciliation")),
    )
