"""Master-data rules: products, CMOs, partnerships (SPEC §4).

Products are upserted set-based.  CMO and partnership files are small and their
rows depend on earlier rows of the same file (an invite then an accept), so they
are applied in file order over in-memory state and written back in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import polars as pl

from transforms.codes import is_gtin14, mangled_code_hint
from transforms.context import FileResult, RunContext
from transforms.rejects import LINE, RejectCollector
from transforms.serials import return_unexported
from transforms.state import register

CMO_COLUMNS = [
    "cmo_id", "cmo_name", "street1", "street2", "street3", "city", "state", "zip_code",
    "country", "collaboration_channel", "sgln", "partnership_status", "contact_email",
    "tenant", "payment_model", "deleted",
]  # fmt: skip


def apply_products(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Upsert products by product_code; a later row of the file wins (§4.1)."""
    last = rows.unique("product_code", keep="last", maintain_order=True).select(
        "product_code", "product_name", pl.col("stock_unit").fill_null("EA")
    )
    view = register(con, last, "products")
    con.execute(
        f"""INSERT INTO products SELECT product_code, product_name, stock_unit FROM {view}
            ON CONFLICT (product_code) DO UPDATE SET
              product_name = excluded.product_name, stock_unit = excluded.stock_unit"""
    )
    con.unregister(view)
    return FileResult(rows_applied=rows.height)


@dataclass
class _Cmo:
    values: dict[str, Any]
    products: list[str] = field(default_factory=list)


def _load_cmos(con: duckdb.DuckDBPyConnection) -> dict[str, _Cmo]:
    cmos: dict[str, _Cmo] = {}
    for row in con.execute(f"SELECT {', '.join(CMO_COLUMNS)} FROM cmos").fetchall():
        cmos[row[0]] = _Cmo(dict(zip(CMO_COLUMNS, row, strict=True)))
    for cmo_id, product in con.execute(
        "SELECT cmo_id, product_code FROM cmo_products ORDER BY cmo_id, pos"
    ).fetchall():
        if cmo_id in cmos:
            cmos[cmo_id].products.append(product)
    return cmos


def _save_cmos(con: duckdb.DuckDBPyConnection, cmos: dict[str, _Cmo], changed: set[str]) -> None:
    if not changed:
        return
    ids = sorted(changed)
    frame = pl.DataFrame(
        [cmos[i].values for i in ids],
        schema={c: (pl.Boolean if c == "deleted" else pl.String) for c in CMO_COLUMNS},
    )
    products = pl.DataFrame(
        [
            {"cmo_id": i, "product_code": p, "pos": n}
            for i in ids
            for n, p in enumerate(cmos[i].products)
        ],
        schema={"cmo_id": pl.String, "product_code": pl.String, "pos": pl.Int32},
    )
    ids_view = register(con, pl.DataFrame({"cmo_id": ids}), "ids")
    view = register(con, frame, "cmos")
    pview = register(con, products, "cmo_products")
    con.execute(f"DELETE FROM cmos WHERE cmo_id IN (SELECT cmo_id FROM {ids_view})")
    con.execute(f"INSERT INTO cmos ({', '.join(CMO_COLUMNS)}) SELECT * FROM {view}")
    con.execute(f"DELETE FROM cmo_products WHERE cmo_id IN (SELECT cmo_id FROM {ids_view})")
    con.execute(f"INSERT INTO cmo_products SELECT cmo_id, product_code, pos FROM {pview}")
    for v in (ids_view, view, pview):
        con.unregister(v)


def apply_cmos(con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext) -> FileResult:
    """Upsert or soft-delete CMOs in file order (§4.2)."""
    cmos = _load_cmos(con)
    known_products = {r[0] for r in con.execute("SELECT product_code FROM products").fetchall()}
    rejects = RejectCollector()
    changed: set[str] = set()
    deleted_now: list[str] = []
    applied = 0
    for row in rows.iter_rows(named=True):
        line = row[LINE]
        cmo_id = row["cmo_id"]
        action = (row.get("action") or "upsert").lower()
        current = cmos.get(cmo_id)
        if action == "delete":
            if current is None:
                rejects.add(
                    line,
                    "cmo_id",
                    cmo_id,
                    "unknown_cmo",
                    f"CMO '{cmo_id}' does not exist: nothing to delete",
                )
                continue
            if current.values["deleted"]:
                rejects.add(
                    line, "cmo_id", cmo_id, "cmo_deleted", f"CMO '{cmo_id}' is already deleted"
                )
                continue
            current.values["deleted"] = True
            changed.add(cmo_id)
            deleted_now.append(cmo_id)
            applied += 1
            continue
        if current is not None and current.values["deleted"]:
            rejects.add(
                line, "cmo_id", cmo_id, "cmo_deleted",
                f"CMO '{cmo_id}' was deleted: a deleted CMO keeps its history and cannot be "
                "changed or re-created; register the CMO under a new cmo_id",
            )  # fmt: skip
            continue
        problems = 0
        for col in ("cmo_name", "city", "country"):
            if not row.get(col):
                rejects.add(
                    line, col, None, "required", f"{col} is required to create or update a CMO"
                )
                problems += 1
        if row.get("collaboration_channel") and not row.get("sgln"):
            rejects.add(
                line, "sgln", None, "required",
                "sgln is required when collaboration_channel is set: the CMO's shipping files are "
                "matched to it by its SGLN",
            )  # fmt: skip
            problems += 1
        products: list[str] = []
        for code in [p.strip() for p in (row.get("produceable_products") or "").split(";")]:
            if not code:
                continue
            if not is_gtin14(code):
                rejects.add(
                    line, "produceable_products", code, "gtin14",
                    mangled_code_hint(code, "produceable product")
                    or f"produceable product '{code}' is not a GTIN-14 (14 digits with a valid GS1 "
                    "check digit); format the column as text in spreadsheets",
                )  # fmt: skip
                problems += 1
            elif code not in known_products:
                rejects.add(
                    line, "produceable_products", code, "unknown_product",
                    f"produceable product '{code}' does not exist: load it in a products file first",
                )  # fmt: skip
                problems += 1
            elif code not in products:
                products.append(code)
        sgln = row.get("sgln")
        if sgln:
            other = next(
                (
                    c for c, v in cmos.items()
                    if c != cmo_id and not v.values["deleted"] and v.values["sgln"] == sgln
                ),
                None,
            )  # fmt: skip
            if other is not None:
                rejects.add(
                    line, "sgln", sgln, "sgln_taken",
                    f"sgln '{sgln}' already belongs to CMO '{other}': shipping files could not be "
                    "told apart",
                )  # fmt: skip
                problems += 1
        if problems:
            continue
        base: dict[str, Any] = (
            dict(current.values)
            if current is not None
            else {
                "partnership_status": "none",
                "contact_email": None,
                "tenant": None,
                "payment_model": None,
            }
        )
        for col in ("cmo_name", "street1", "street2", "street3", "city", "state", "zip_code",
                    "collaboration_channel", "sgln"):  # fmt: skip
            base[col] = row.get(col)
        base["country"] = (row.get("country") or "").upper()
        base["cmo_id"] = cmo_id
        base["deleted"] = False
        cmos[cmo_id] = _Cmo(base, products)
        changed.add(cmo_id)
        applied += 1
    _save_cmos(con, cmos, changed)
    for cmo_id in deleted_now:
        return_unexported(con, cmo_id, None, None)
    return FileResult(rejects=rejects.frame(), rows_applied=applied)


_TRANSITIONS = {
    ("none", "invite"): "pending",
    ("pending", "accept"): "active",
    ("pending", "cancel"): "none",
    ("active", "remove"): "none",
}


def apply_partnerships(
    con: duckdb.DuckDBPyConnection, rows: pl.DataFrame, ctx: RunContext
) -> FileResult:
    """Partnership state machine, in file order (§4.3)."""
    cmos = _load_cmos(con)
    rejects = RejectCollector()
    changed: set[str] = set()
    applied = 0
    for row in rows.iter_rows(named=True):
        line = row[LINE]
        cmo_id = row["cmo_id"]
        event = row["event"].lower()
        cmo = cmos.get(cmo_id)
        if cmo is None or cmo.values["deleted"]:
            state = "does not exist" if cmo is None else "is deleted"
            rejects.add(
                line,
                "cmo_id",
                cmo_id,
                "unknown_cmo",
                f"CMO '{cmo_id}' {state}: a partnership needs an existing CMO",
            )
            continue
        status = cmo.values["partnership_status"] or "none"
        target = _TRANSITIONS.get((status, event))
        if target is None:
            rejects.add(
                line, "event", event, "transition",
                f"cannot {event} the partnership of CMO '{cmo_id}': its partnership status is "
                f"'{status}' (invite: none->pending, accept: pending->active, cancel: "
                "pending->none, remove: active->none)",
            )  # fmt: skip
            continue
        missing = []
        if event == "invite" and not row.get("contact_email"):
            missing.append("contact_email")
        if event == "accept":
            missing += [c for c in ("tenant", "payment_model") if not row.get(c)]
        if missing:
            for col in missing:
                rejects.add(line, col, None, "required", f"{col} is required for the event {event}")
            continue
        values = dict(cmo.values)
        values["partnership_status"] = target
        if event == "invite":
            values["contact_email"] = row["contact_email"]
        elif event == "accept":
            values["tenant"] = row["tenant"]
            values["payment_model"] = row["payment_model"].lower()
        else:
            values.update(contact_email=None, tenant=None, payment_model=None)
        cmos[cmo_id] = replace(cmo, values=values)
        changed.add(cmo_id)
        applied += 1
    _save_cmos(con, cmos, changed)
    return FileResult(rejects=rejects.frame(), rows_applied=applied)
