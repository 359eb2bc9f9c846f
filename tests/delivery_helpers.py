"""A day of export files for two CMOs, and what the delivery tests read back: deliveries.csv,
the `deliveries` block, the marks in the state, the files in a folder."""

from __future__ import annotations

import csv as csvlib
import io
from pathlib import Path
from typing import Any

import duckdb

from tests.pipeline_helpers import csv, report, run_day, summary
from transforms.context import Config, DeliveryTarget, InboxConfig

P1 = "11223344556675"


def day_one(
    exports: dict[str, list[int]] | None = None, pool: int = 20_000
) -> dict[str, str | bytes]:
    """Master data, a pool of `pool` serials, 45 % of it assigned to each CMO, and one
    export file per quantity listed per CMO."""
    exports = exports or {"ACME": [100, 50], "BETA": [70]}
    return {
        "products_a.csv": csv("product_code,product_name", f"{P1},Medicine Demo Product"),
        "cmos_a.csv": csv(
            "cmo_id,cmo_name,city,country,produceable_products",
            f"ACME,Acme Pharma,Mannheim,DE,{P1}",
            f"BETA,Beta Labs,Cork,IE,{P1}",
        ),
        "serial_pool_a.csv": csv(
            "product_code,serial", *[f"{P1},S{i:07d}" for i in range(1, pool + 1)]
        ),
        "assignments_a.csv": csv(
            "cmo_id,product_code,quantity",
            f"ACME,{P1},{pool * 45 // 100}",
            f"BETA,{P1},{pool * 45 // 100}",
        ),
        "exports_a.csv": csv(
            "cmo_id,product_code,quantity",
            *[f"{cmo},{P1},{n}" for cmo, ns in exports.items() for n in ns],
        ),
    }


def more_exports(name: str, rows: list[tuple[str, int]]) -> dict[str, str | bytes]:
    return {name: csv("cmo_id,product_code,quantity", *[f"{c},{P1},{n}" for c, n in rows])}


def config(*targets: DeliveryTarget) -> Config:
    return Config(inbox=InboxConfig(settle_seconds=0), delivery=tuple(targets))


def folder_target(cmo_id: str, folder: Path) -> DeliveryTarget:
    return DeliveryTarget(cmo_id, f"file://{folder}")


def night(
    root: Path, as_of: str, cfg: Config, files: dict[str, str | bytes] | None = None
) -> dict[str, Any]:
    """One run; returns its summary with `deliveries.csv`'s rows under `rows` and its
    report folder under `folder`."""
    out = run_day(root, as_of, files, cfg)
    s = summary(root, out["run_id"])
    s["rows"] = list(csvlib.DictReader(io.StringIO(report(root, out["run_id"], "deliveries.csv"))))
    s["header"] = report(root, out["run_id"], "deliveries.csv").splitlines()[0]
    s["folder"] = root / "outbox" / "reports" / out["run_id"]
    return s


def exported(root: Path, cmo_id: str) -> dict[str, bytes]:
    """The CMO's export files in the outbox, by name."""
    folder = root / "outbox" / "serials" / cmo_id
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


def files_in(folder: Path) -> dict[str, bytes]:
    """Every file in a delivery folder (temporary names included), by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def marks(root: Path) -> dict[str, tuple[Any, ...]]:
    """file_name -> (delivered_at as text, delivered_to, delivery_attempts)."""
    con = duckdb.connect(str(root / "state" / "cmi.duckdb"))
    try:
        return {
            name: (None if at is None else str(at), to, n)
            for name, at, to, n in con.execute(
                "SELECT file_name, delivered_at, delivered_to, delivery_attempts FROM outbox_files"
            ).fetchall()
        }
    finally:
        con.close()


def forget_delivered(root: Path, file_name: str) -> None:
    """What a run killed between the rename on the server and its mark leaves: the file on
    the server, not marked delivered."""
    con = duckdb.connect(str(root / "state" / "cmi.duckdb"))
    try:
        con.execute(
            "UPDATE outbox_files SET delivered_at = NULL, delivered_to = NULL, "
            "delivery_attempts = delivery_attempts - 1 WHERE file_name = ?",
            [file_name],
        )
    finally:
        con.close()
