"""Days for the report tests: the demo day, a day with every kind of trouble, a clean day."""

from __future__ import annotations

import csv as csvlib
import datetime as dt
import json
from pathlib import Path
from typing import Any

from connectors.demo import _serials, _shipping_xml, demo_files
from flows.pipeline import run_local
from tests.pipeline_helpers import SETTLED, csv, drop, paths_in
from transforms.context import Config

DAY = dt.datetime(2026, 11, 23, 2, 0, 0)
NEXT = dt.datetime(2026, 12, 10, 2, 0, 0)  # some contract lines have expired by then
P1 = "11223344556675"
P2 = "04034567000018"


def run(root: Path, files: dict[str, str], when: dt.datetime, config: Config = SETTLED) -> Path:
    """Run a day over `files` in `root`; return its report folder."""
    paths = paths_in(root)
    drop(paths.inbox, files)  # type: ignore[arg-type]
    paths.outbox.mkdir(parents=True, exist_ok=True)
    out = run_local(paths, config, when)
    return Path(out["report_dir"])


def demo_day(root: Path, config: Config = SETTLED) -> Path:
    return run(root, demo_files(DAY.date()), DAY, config)


def trouble_day(root: Path, config: Config = SETTLED) -> Path:
    """The demo day, then a second day with every kind of trouble: an unrecognised file, a
    misspelt column, a semicolon-separated file, a file applied before (a duplicate), rows
    rejected by every side, text that a spreadsheet would read as a formula, names with
    HTML in them, shipping exceptions, expired contract lines."""
    run(root, demo_files(DAY.date()), DAY, config)
    files = {
        "notes.txt": "not a file kind\n",
        "products_misspelt.csv": csv("product_code,product_nme", f"{P1},Typo"),
        "products_semicolon.csv": f"product_code;product_name\n{P2};=HYPERLINK(\"x\")\n",
        "cmos_again.csv": demo_files(DAY.date())["cmos_2026.csv"],  # applied yesterday
        "cmos_html.csv": csv(
            "cmo_id,cmo_name,city,country,produceable_products",
            f"HTML-01,<script>alert(1)</script> & Co,Basel,CH,{P1}",
            "BAD,Bad country,Basel,XX,",
        ),
        "assignments_late.csv": csv(
            "cmo_id,product_code,quantity", f"HTML-01,{P1},5", f"NOBODY,{P1},1",
            f"ACME-01,{P2},999999",
        ),
        "exports_late.csv": csv("cmo_id,product_code,quantity", f"HTML-01,{P1},5",
                                f"HTML-01,{P1},1"),
        # the demo's shipments reported again (ALREADY_SHIPPED), and a serial never issued
        "shipping_again.xml": _shipping_xml(_serials("2000", 3), NEXT.date()),
        "orders_late.csv": csv(
            "order_no,order_line,order_date,customer,item,quantity,warehouse,contract_id,line_no",
            f"SO-LATE-1,1,2026-11-24,PHARM-PHX,{P2},5,,,",
            f"SO-LATE-1,2,2026-11-24,-cmd|' /C calc'!A0,{P2},5,,,",
            f"SO-LATE-1,3,2026-11-24,PHARM-PHX,{P2},0,,,",
        ),
    }  # fmt: skip
    return run(root, files, NEXT, config)


def clean_day(root: Path, config: Config = SETTLED) -> Path:
    files = {
        "products_a.csv": csv("product_code,product_name", f"{P1},Demo", f"{P2},Other"),
        "cmos_a.csv": csv("cmo_id,cmo_name,city,country,produceable_products",
                          f"C1,One,Basel,CH,{P1};{P2}"),
        "serial_pool_a.csv": csv("product_code,serial", *(f"{P1},S{i:05d}" for i in range(20))),
        "assignments_a.csv": csv("cmo_id,product_code,quantity", f"C1,{P1},12"),
        "exports_a.csv": csv("cmo_id,product_code,quantity", f"C1,{P1},4"),
    }  # fmt: skip
    return run(root, files, DAY, config)


def read_csv(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / name).open(encoding="utf-8", newline="") as fh:
        return list(csvlib.DictReader(fh))


def summary(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "run_summary.json").read_text()))
