"""Generator of the serial benchmark's inbox: a pool, assignment and export files (SPEC §5)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.codes import gs1_check_digit


def products(n: int) -> list[str]:
    return [(b := f"04{n_:011d}") + gs1_check_digit(b) for n_ in range(1, n + 1)]


def write_master(inbox: Path, n_products: int, n_cmos: int) -> tuple[list[str], list[str]]:
    codes = products(n_products)
    cmos = [f"CMO{i:03d}" for i in range(n_cmos)]
    inbox.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {"product_code": codes, "product_name": [f"Bench product {i}" for i in range(n_products)]}
    ).write_csv(inbox / "products_bench.csv")
    pl.DataFrame(
        {
            "cmo_id": cmos,
            "cmo_name": [f"Bench Maker {i}" for i in range(n_cmos)],
            "city": ["Basel"] * n_cmos,
            "country": ["CH"] * n_cmos,
            "produceable_products": [";".join(codes)] * n_cmos,
        }
    ).write_csv(inbox / "cmos_bench.csv")
    return codes, cmos


def write_pool(path: Path, codes: list[str], serials: int) -> None:
    """`serials` rows spread evenly over the products; 12-digit serials, unique per product."""
    per = serials // len(codes)
    frame = pl.DataFrame({"product_code": codes}).join(
        pl.DataFrame({"i": pl.int_range(0, per, eager=True)}), how="cross"
    )
    frame = frame.select(
        "product_code",
        (pl.lit("7") + (pl.col("i") * 7919 % 100_000_000_000).cast(pl.String).str.zfill(11)).alias(
            "serial"
        ),
    )
    frame.write_csv(path)


def write_requests(
    path: Path, codes: list[str], cmos: list[str], rows: int, total: int, pairs: int
) -> None:
    """`rows` rows of cmo_id, product_code, quantity adding up to `total`, over `pairs` (CMO, product) pairs."""
    q = total // rows
    pl.DataFrame(
        {
            "cmo_id": [cmos[(i % pairs) % len(cmos)] for i in range(rows)],
            "product_code": [codes[((i % pairs) // len(cmos)) % len(codes)] for i in range(rows)],
            "quantity": [str(q)] * rows,
        }
    ).write_csv(path)
