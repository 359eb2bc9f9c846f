"""Generator of the year-five benchmark (issue 17): a year of nights, and the night after.

A store in its fifth year holds, at full size (`HistoryShape(scale=1)`), 100M serials of
20 products handed to 200 CMOs: 60M assigned, 40M exported, all of those commissioned
and packed by their CMOs (units in inner packs of 5, inner packs in cases of 4, cases
on pallets of 25, each a logistic unit with an SSCC: 1.25 stored links per unit, 50M
links), 30M of them shipped; a year of export files (50 a night) and of contract
activity (10k contract lines, 5M consumed order lines).

The history is not written table by table: `simulate` plans it night by night as real
inbox files — pool deliveries (500k serials of one product), assignments, order files,
EPCIS documents in which CMOs commission and pack what was exported to them and ship
their oldest pallets, export files — and `bench.bench_history` runs each night through
the product's own stages.  The plan follows the product's rules at the level of serial
ranges (the pool is first-in first-out, an export takes the pair's oldest assigned
serials, a CMO commissions what it was exported), so every file applies whole, and the
plan knows which serials each CMO holds without reading the store.

After the year (or, for the *fresh* store, right after the master data), two *eve*
nights leave what the measured night needs: CMO `SENDER` holds serials exported and
not yet commissioned and pallets packed in an earlier document.  `night_files` then
writes the measured night (at full size: a 2M-serial pool file, 100k generated
serials, 1M assigned, 500k exported in 50 files, a shipping document that commissions
150k units and ships 200k — 50k of them packed in an earlier document — and 100k
order lines) for the store whose plan it is given.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from transforms.codes import gs1_check_digit

COMPANY = "4012345"  # the MAH's GS1 company prefix (products and SSCCs)
MULTIPLIER = 2654435761  # odd and prime to 5: j -> j*M + c mod 10^12 is a bijection
SPACE = 10**12
NIGHT_J = 10**9  # the measured night's pool serials: arrival numbers no store reaches
DAY0 = dt.datetime(2025, 1, 1, 2, 0, 0)
UNITS_PER_INNER, INNERS_PER_CASE, CASES_PER_PALLET = 5, 4, 25
SHIPPED_SHARE = 0.75  # of what a CMO commissioned, the part it has shipped
DOCS_PER_NIGHT = 5  # shipping documents a night (more when the year has few nights)
EXPORT_FILES = 50  # export files a night (the measured night; the year: 365 nights' worth)
SENDER = 6  # the CMO that sends the measured night's shipping document
SENDER_PRODUCT = 6  # and its product


def product_code(p: int) -> str:
    body = f"0{COMPANY}{p + 1:05d}"
    return body + gs1_check_digit(body)


def item_ref(p: int) -> str:
    return f"0{p + 1:05d}"


def cmo_id(c: int) -> str:
    return f"CMO{c:03d}"


def cmo_sgln(c: int) -> str:
    return f"{COMPANY}.{c + 1:05d}.0"


def serial_expr(p: int, j: pl.Expr) -> pl.Expr:
    """The 12-digit serial of arrival number `j` of product `p` (unique per product)."""
    return ((j * MULTIPLIER + 7919 * (p + 1)) % SPACE).cast(pl.String).str.zfill(12)


def serials(p: int, lo: int, hi: int) -> pl.Series:
    j = pl.int_range(lo, hi, dtype=pl.Int64, eager=True).alias("j")
    return pl.select(serial_expr(p, pl.lit(j))).to_series().alias("serial")


def sscc(k: int) -> str:
    return f"urn:epc:id:sscc:{COMPANY}.0{k:09d}"


@dataclass(frozen=True)
class HistoryShape:
    """Sizes of the history and of the measured night; `scale` 1 is the full size."""

    scale: float = 1.0
    nights: int = 24  # nights the year of history is run in (its totals do not change)
    products: int = 20
    cmos: int = 200

    def n(self, full: float, least: int = 1) -> int:
        return max(least, int(full * self.scale))

    @property
    def serials(self) -> int:
        return self.n(100e6, 1000)

    @property
    def assigned(self) -> int:
        return self.n(60e6)

    @property
    def exported(self) -> int:
        return self.n(40e6)

    @property
    def order_lines(self) -> int:
        return self.n(5e6)

    @property
    def contracts(self) -> int:
        return 1000 if self.scale >= 0.1 else max(20, int(10_000 * self.scale))

    @property
    def delivery(self) -> int:
        return self.n(500_000, 100)

    # the measured night
    @property
    def night_pool(self) -> int:
        return self.n(2e6, 40)

    @property
    def night_generate(self) -> int:
        return self.n(100_000, 2)

    @property
    def night_assign(self) -> int:
        return self.n(1e6, 80)

    @property
    def night_export(self) -> int:
        return self.n(500_000, EXPORT_FILES)

    @property
    def night_commission(self) -> int:
        return self.n(150_000, 20)

    @property
    def night_earlier(self) -> int:
        return self.n(50_000, 20)

    @property
    def night_orders(self) -> int:
        return self.n(100_000, 10)

    def produces(self, c: int) -> list[int]:
        return [c % self.products, (c + self.products // 2) % self.products]


@dataclass
class Doc:
    """An EPCIS document: `commission` (product, lo, hi) ranges of arrival numbers, in
    order, packed from `first_sscc` on; `ship`: SSCCs of pallets shipped."""

    sender: int
    lot: str
    expiry: dt.date
    commission: list[tuple[int, int, int]]
    first_sscc: int
    ship: list[int]


@dataclass
class Night:
    """One night's inbox: CSV frames by file name, and EPCIS documents."""

    as_of: dt.datetime
    csvs: dict[str, pl.DataFrame] = field(default_factory=dict)
    docs: dict[str, Doc] = field(default_factory=dict)

    def write(self, inbox: Path) -> list[Path]:
        inbox.mkdir(parents=True, exist_ok=True)
        out = []
        for name, frame in self.csvs.items():
            frame.write_csv(inbox / name)
            out.append(inbox / name)
        for name, doc in self.docs.items():
            write_doc(inbox / name, doc)
            out.append(inbox / name)
        return out


@dataclass
class Pallet:
    sscc: int
    units: int


class Plan:
    """The state of the serials at the level of ranges, as the product's rules leave it."""

    def __init__(self, shape: HistoryShape) -> None:
        self.shape = shape
        p = shape.products
        self.arrived = [0] * p  # serials of each product (arrival numbers 0 .. arrived-1)
        self.assigned_upto = [0] * p  # FIFO: serials below are assigned
        self.ane: dict[tuple[int, int], deque[list[int]]] = {}  # (cmo, p) -> ranges
        self.unc: dict[int, deque[list[int]]] = {}  # cmo -> exported, not commissioned (p, lo, hi)
        self.pallets: dict[int, deque[Pallet]] = {}  # cmo -> packed, not shipped, oldest first
        self.commissioned = [0] * shape.cmos
        self.shipped = [0] * shape.cmos
        self.next_sscc = 1
        self.next_order = 0
        self.delivery_acc = 0.0
        self.next_delivery_product = 0
        self.assign_cursor = 0
        self.export_cursor = 0
        self.totals = {"pool": 0, "assigned": 0, "exported": 0}
        self.pairs = [(c, q) for c in range(shape.cmos) for q in shape.produces(c)]
        self.eve_pallets: list[int] = []  # the eve's pallets, shipped by the measured night

    # ---------------------------------------------------------------- rules, by ranges
    def pool(self, p: int, n: int) -> tuple[int, int]:
        lo = self.arrived[p]
        self.arrived[p] += n
        self.totals["pool"] += n
        return lo, lo + n

    def available(self, p: int) -> int:
        return self.arrived[p] - self.assigned_upto[p]

    def assign(self, c: int, p: int, n: int) -> None:
        lo = self.assigned_upto[p]
        assert n <= self.available(p)
        self.assigned_upto[p] += n
        self.ane.setdefault((c, p), deque()).append([lo, lo + n])
        self.totals["assigned"] += n

    def ane_count(self, c: int, p: int) -> int:
        return sum(hi - lo for lo, hi in self.ane.get((c, p), ()))

    def export(self, c: int, p: int, n: int) -> None:
        queue = self.ane[(c, p)]
        left = n
        while left:
            lo, hi = queue[0]
            take = min(left, hi - lo)
            self.unc.setdefault(c, deque()).append([p, lo, lo + take])
            queue[0][0] += take
            if queue[0][0] == hi:
                queue.popleft()
            left -= take
        self.totals["exported"] += n

    def take_unc(self, c: int, n: int | None) -> list[tuple[int, int, int]]:
        """Exported, not commissioned serials of `c`, oldest exported first (all: None)."""
        queue = self.unc.get(c, deque())
        out: list[tuple[int, int, int]] = []
        left = math.inf if n is None else n
        while queue and left > 0:
            p, lo, hi = queue[0]
            take = int(min(left, hi - lo))
            if out and out[-1][0] == p and out[-1][2] == lo:
                out[-1] = (p, out[-1][1], lo + take)
            else:
                out.append((p, lo, lo + take))
            queue[0][1] += take
            if queue[0][1] == hi:
                queue.popleft()
            left -= take
        return out

    def pack(self, c: int, units: list[tuple[int, int, int]]) -> tuple[int, list[Pallet]]:
        """SSCCs for the units' inner packs, cases and pallets (per product, in order):
        the first SSCC, and the pallets (now packed, not shipped)."""
        first = self.next_sscc
        pallets = []
        for _p, lo, hi in units:
            layout = packing(hi - lo)
            for i, size in enumerate(layout.pallet_units):
                pallets.append(Pallet(self.next_sscc + layout.pallet_offset(i), size))
            self.next_sscc += layout.ssccs
        self.commissioned[c] += sum(hi - lo for _p, lo, hi in units)
        self.pallets.setdefault(c, deque()).extend(pallets)
        return first, pallets

    def ship_oldest(self, c: int) -> list[int]:
        """Pallets of `c`, oldest first, until it has shipped its share."""
        out = []
        queue = self.pallets.get(c, deque())
        while queue and self.shipped[c] < SHIPPED_SHARE * self.commissioned[c]:
            pallet = queue.popleft()
            self.shipped[c] += pallet.units
            out.append(pallet.sscc)
        return out

    def ship(self, c: int, ssccs: list[int]) -> None:
        wanted = set(ssccs)
        queue = self.pallets.get(c, deque())
        kept = deque(pal for pal in queue if pal.sscc not in wanted)
        self.shipped[c] += sum(pal.units for pal in queue if pal.sscc in wanted)
        self.pallets[c] = kept


@dataclass(frozen=True)
class Packing:
    """How `units` consecutive units are packed: inner packs of 5 (the last may be
    short), cases of 4 inner packs, pallets of 25 cases.  SSCCs are numbered per
    pallet: the pallet, then per case the case and its inner packs."""

    units: int

    @property
    def inners(self) -> int:
        return -(-self.units // UNITS_PER_INNER)

    @property
    def cases(self) -> int:
        return -(-self.inners // INNERS_PER_CASE)

    @property
    def pallets(self) -> int:
        return -(-self.cases // CASES_PER_PALLET)

    @property
    def ssccs(self) -> int:
        return self.inners + self.cases + self.pallets

    def pallet_offset(self, i: int) -> int:
        # pallet i: after i full pallets of 25 cases of (1 + 4) SSCCs, plus the pallet SSCCs
        return i * (1 + CASES_PER_PALLET * (1 + INNERS_PER_CASE))

    @property
    def pallet_units(self) -> list[int]:
        per = UNITS_PER_INNER * INNERS_PER_CASE * CASES_PER_PALLET
        full, rest = divmod(self.units, per)
        return [per] * full + ([rest] if rest else [])


def packing(units: int) -> Packing:
    return Packing(units)


# ------------------------------------------------------------------- files


def master_frames(shape: HistoryShape) -> dict[str, pl.DataFrame]:
    codes = [product_code(p) for p in range(shape.products)]
    products = pl.DataFrame(
        {"product_code": codes, "product_name": [f"Product {p + 1}" for p in range(len(codes))]}
    )
    cmos = pl.DataFrame(
        {
            "cmo_id": [cmo_id(c) for c in range(shape.cmos)],
            "cmo_name": [f"Maker {c} GmbH" for c in range(shape.cmos)],
            "city": ["Basel"] * shape.cmos,
            "country": ["CH"] * shape.cmos,
            "produceable_products": [
                ";".join(codes[q] for q in shape.produces(c)) for c in range(shape.cmos)
            ],
            "collaboration_channel": ["TraceLink"] * shape.cmos,
            "sgln": [cmo_sgln(c) for c in range(shape.cmos)],
        }
    )
    return {"products_master.csv": products, "cmos_master.csv": cmos}


def contract_frames(shape: HistoryShape) -> dict[str, pl.DataFrame]:
    """WBS contracts (open to every customer, or to one), 10 lines each over the products,
    activated at once (the lines are initialized with their contract quantity)."""
    n = shape.contracts
    k = pl.int_range(0, n, dtype=pl.Int64, eager=True)
    contracts = pl.DataFrame({"k": k}).select(
        pl.format("K{}", pl.col("k").cast(pl.String).str.zfill(5)).alias("contract_id"),
        pl.format("Contract {}", pl.col("k")).alias("description"),
        pl.lit("WBS").alias("contract_type"),
        pl.when(pl.col("k") % 2 == 1)
        .then(pl.format("C{}", (pl.col("k") % 500).cast(pl.String).str.zfill(4)))
        .alias("customer"),
        pl.lit("SUP1").alias("supplier"),
        pl.lit("EUR").alias("currency"),
        pl.lit("handler").alias("handler"),
        pl.lit("responsible").alias("responsible"),
        pl.lit("W1").alias("warehouse"),
        pl.lit("2025-01-01").alias("start_date"),
        pl.format("{}-12-31", 2030 + pl.col("k") % 5).alias("end_date"),
        pl.lit("Y").alias("active"),
    )
    line = pl.int_range(0, n * 10, dtype=pl.Int64, eager=True)
    lines = pl.DataFrame({"i": line}).select(
        pl.format("K{}", (pl.col("i") // 10).cast(pl.String).str.zfill(5)).alias("contract_id"),
        (pl.col("i") % 10 + 1).cast(pl.String).alias("line_no"),
        pl.col("i")
        .map_elements(lambda i: product_code(i % shape.products), return_dtype=pl.String)
        .alias("item"),
        pl.lit("1000000000").alias("contract_quantity"),
        pl.lit("1.00").alias("cost_price"),
        pl.format("{}-{}-28", 2029 + pl.col("i") % 2, (pl.col("i") % 12 + 1).cast(pl.String).str.zfill(2)).alias("end_date"),
    )  # fmt: skip
    return {"contracts_master.csv": contracts, "contract_lines_master.csv": lines}


def orders_frame(shape: HistoryShape, plan: Plan, night: int, n: int, day: dt.date) -> pl.DataFrame:
    """`n` order lines of five lines per order, any customer, any product."""
    first = plan.next_order
    plan.next_order += n
    i = pl.int_range(first, first + n, dtype=pl.Int64, eager=True)
    codes = pl.Series([product_code(p) for p in range(shape.products)])
    return pl.DataFrame({"i": i}).select(
        pl.format("SO{}", (pl.col("i") // 5).cast(pl.String).str.zfill(9)).alias("order_no"),
        (pl.col("i") % 5 + 1).cast(pl.String).alias("order_line"),
        pl.lit(day.isoformat()).alias("order_date"),
        pl.format("C{}", ((pl.col("i") * 7) % 1000).cast(pl.String).str.zfill(4)).alias("customer"),
        pl.lit(codes).gather((pl.col("i") * 13) % shape.products).alias("item"),
        ((pl.col("i") % 9) + 1).cast(pl.String).alias("quantity"),
    )


def _pool_frame(blocks: list[tuple[int, int, int, int]]) -> pl.DataFrame:
    """Pool file rows: (product, j_lo, j_hi, j_offset) blocks in order."""
    parts = []
    for p, lo, hi, offset in blocks:
        parts.append(
            pl.DataFrame({"serial": serials(p, lo + offset, hi + offset)}).select(
                pl.lit(product_code(p)).alias("product_code"), "serial"
            )
        )
    return pl.concat(parts)


def _requests(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "cmo_id": [cmo_id(c) for c, _p, _n in rows],
            "product_code": [product_code(p) for _c, p, _n in rows],
            "quantity": [str(n) for _c, _p, n in rows],
        }
    )


def simulate(
    shape: HistoryShape, *, fresh: bool, done: dt.datetime | None = None
) -> Iterator[tuple[str, Night]]:
    """The nights that build a store, in order, each (label, night); the plan's state
    after the last one is what `night_files` needs.  `fresh`: only the master data and
    the eve nights (the measured night's prerequisites); otherwise the year between.
    `done`: the nights up to this date are already in the store (a resumed build): they
    are planned but yield no files, and are not yielded."""
    plan = Plan(shape)
    for label, night in _nights(shape, plan, fresh, done=done):
        if done is None or night.as_of > done:
            yield label, night


def final_plan(shape: HistoryShape, *, fresh: bool) -> Plan:
    plan = Plan(shape)
    for _label, _night in _nights(shape, plan, fresh, files=False):
        pass
    return plan


def _nights(
    shape: HistoryShape,
    plan: Plan,
    fresh: bool,
    *,
    files: bool = True,
    done: dt.datetime | None = None,
) -> Iterator[tuple[str, Night]]:
    def wanted(as_of: dt.datetime) -> bool:
        return files and (done is None or as_of > done)

    night0 = Night(DAY0)
    if wanted(DAY0):
        night0.csvs.update(master_frames(shape))
        night0.csvs.update(contract_frames(shape))
    yield "master", night0
    year = 0 if fresh else shape.nights
    for n in range(1, year + 1):
        as_of = DAY0 + dt.timedelta(days=n)
        yield f"night {n}", _history_night(shape, plan, n, wanted(as_of))
    base = shape.nights + 1
    for label, day, make in (("eve 1", base, _eve_exports), ("eve 2", base + 1, _eve_packing)):
        as_of = DAY0 + dt.timedelta(days=day)
        yield label, make(shape, plan, as_of, wanted(as_of))


def night_as_of(shape: HistoryShape) -> dt.datetime:
    return DAY0 + dt.timedelta(days=shape.nights + 3)


def _history_night(shape: HistoryShape, plan: Plan, n: int, files: bool) -> Night:
    night = Night(DAY0 + dt.timedelta(days=n))
    frac = n / shape.nights
    last = n == shape.nights
    # pool deliveries: 500k serials of one product each, products in turn
    plan.delivery_acc += shape.serials / shape.nights
    blocks = []
    while plan.delivery_acc >= shape.delivery or (last and plan.totals["pool"] < shape.serials):
        size = min(shape.delivery, shape.serials - plan.totals["pool"])
        if size <= 0:
            break
        p = plan.next_delivery_product
        plan.next_delivery_product = (p + 1) % shape.products
        lo, hi = plan.pool(p, size)
        blocks.append((p, lo, hi, 0))
        plan.delivery_acc -= size
    if blocks and files:
        night.csvs[f"serial_pool_{n:04d}.csv"] = _pool_frame(blocks)
    # assignments: up to the year's share so far, 20 rows a night, pairs in turn
    want = int(shape.assigned * frac) - plan.totals["assigned"]
    rows = _spread(plan, want, 20, lambda c, p: plan.available(p), plan.assign, "assign_cursor")
    if rows and files:
        night.csvs[f"assignments_{n:04d}.csv"] = _requests(rows)
    # orders
    orders = int(shape.order_lines * frac) - plan.next_order
    frame = orders_frame(shape, plan, n, orders, night.as_of.date())
    if orders and files:
        night.csvs[f"orders_{n:04d}.csv"] = frame
    # shipping: CMOs in turn commission and pack all they were exported, and ship their
    # oldest pallets up to their share
    docs = max(DOCS_PER_NIGHT, -(-2 * shape.cmos // shape.nights))  # each CMO twice or more
    # (on the year's last night every CMO sends one: all that was exported is packed)
    senders = range(shape.cmos) if last else [(n * docs + k) % shape.cmos for k in range(docs)]
    for k, c in enumerate(senders):
        if c == SENDER:
            continue
        units = plan.take_unc(c, None)
        if not units:
            continue
        first, _ = plan.pack(c, units)
        ship = plan.ship_oldest(c)
        doc = Doc(
            c, f"L{n:03d}{k}", (night.as_of + dt.timedelta(days=1095)).date(), units, first, ship
        )
        if files:
            night.docs[f"shipping_{n:04d}_{cmo_id(c)}.xml"] = doc
    # exports: up to the year's share so far, 50 files a night
    want = int(shape.exported * frac) - plan.totals["exported"]
    per_night = -(-EXPORT_FILES * 365 // shape.nights)  # a year of export files in any nights
    rows = _spread(plan, want, per_night, plan.ane_count, plan.export, "export_cursor")
    if rows and files:
        night.csvs[f"exports_{n:04d}.csv"] = _requests(rows)
    return night


def _spread(
    plan: Plan,
    total: int,
    rows: int,
    room: Callable[[int, int], int],
    apply: Callable[[int, int, int], None],
    cursor: str,
) -> list[tuple[int, int, int]]:
    """`total` in about `rows` rows over the (CMO, product) pairs in turn, each row at
    most what `room(cmo, product)` allows, each applied to the plan as it is made (the
    sender of the measured night left out)."""
    if total <= 0:
        return []
    chunk = max(1, -(-total // rows))
    out: list[tuple[int, int, int]] = []
    tries = 0
    while total > 0 and tries < len(plan.pairs):
        i = getattr(plan, cursor)
        setattr(plan, cursor, (i + 1) % len(plan.pairs))
        c, p = plan.pairs[i]
        q = 0 if c == SENDER else min(chunk, total, room(c, p))
        if q <= 0:
            tries += 1
            continue
        tries = 0
        apply(c, p, q)
        out.append((c, p, q))
        total -= q
    return out


def _eve_exports(shape: HistoryShape, plan: Plan, as_of: dt.datetime, files: bool) -> Night:
    """The sender gets what the measured night commissions and ships (its first eve)."""
    night = Night(as_of)
    need = shape.night_commission + shape.night_earlier
    lo, hi = plan.pool(SENDER_PRODUCT, need)
    if files:
        night.csvs["serial_pool_eve.csv"] = _pool_frame([(SENDER_PRODUCT, lo, hi, 0)])
    plan.assign(SENDER, SENDER_PRODUCT, need)
    if files:
        night.csvs["assignments_eve.csv"] = _requests([(SENDER, SENDER_PRODUCT, need)])
    rows = [(SENDER, SENDER_PRODUCT, n) for n in _split(need, 20)]
    for c, p, q in rows:
        plan.export(c, p, q)
    if files:
        night.csvs["exports_eve.csv"] = _requests(rows)
    return night


def _eve_packing(shape: HistoryShape, plan: Plan, as_of: dt.datetime, files: bool) -> Night:
    """The sender commissions and packs the units the measured night ships from an
    earlier document (its second eve)."""
    night = Night(as_of)
    units = plan.take_unc(SENDER, shape.night_earlier)
    first, pallets = plan.pack(SENDER, units)
    plan.eve_pallets = [pal.sscc for pal in pallets]
    doc = Doc(SENDER, "LEVE", (as_of + dt.timedelta(days=1095)).date(), units, first, [])
    if files:
        night.docs["shipping_eve.xml"] = doc
    return night


def _split(total: int, parts: int) -> list[int]:
    base, rest = divmod(total, parts)
    return [base + (1 if i < rest else 0) for i in range(parts) if base or i < rest]


def night_files(shape: HistoryShape, plan: Plan) -> Night:
    """The measured night for the store `plan` describes (SPEC §3 kinds, one file each)."""
    night = Night(night_as_of(shape))
    per = shape.night_pool // 4
    night.csvs["serial_pool_night.csv"] = _pool_frame(
        [(p, 0, per, NIGHT_J) for p in range(4)]
    )  # arrival numbers no store reaches: serials new to every store
    night.csvs["serial_generate_night.csv"] = pl.DataFrame(
        {
            "product_code": [product_code(4), product_code(5)],
            "quantity": [str(shape.night_generate // 2)] * 2,
        }
    )
    pairs = [(c, p) for p in range(4) for c in range(shape.cmos) if p in shape.produces(c)]
    pairs = [pc for pc in pairs if pc[0] != SENDER][:80]
    night.csvs["assignments_night.csv"] = _requests(
        [(c, p, q) for (c, p), q in zip(pairs, _split(shape.night_assign, len(pairs)), strict=True)]
    )
    night.csvs["orders_night.csv"] = orders_frame(
        shape, plan, 0, shape.night_orders, night.as_of.date()
    )
    units = plan.take_unc(SENDER, shape.night_commission)
    first, pallets = plan.pack(SENDER, units)
    ship = plan.eve_pallets + [pal.sscc for pal in pallets]
    night.docs["shipping_night.xml"] = Doc(
        SENDER, "LNIGHT", (night.as_of + dt.timedelta(days=1095)).date(), units, first, ship
    )
    night.csvs["exports_night.csv"] = _requests(
        [(c, p, q) for (c, p), q in zip(pairs[:EXPORT_FILES], _split(shape.night_export, EXPORT_FILES), strict=True)]
    )  # fmt: skip
    return night


# ------------------------------------------------------------------- EPCIS documents

_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1" xmlns:cbvmda="urn:epcglobal:cbv:mda" xmlns:sbdh="http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader" schemaVersion="1.2" creationDate="{time}">
  <EPCISHeader>
    <sbdh:StandardBusinessDocumentHeader>
      <sbdh:HeaderVersion>1.0</sbdh:HeaderVersion>
      <sbdh:Sender><sbdh:Identifier Authority="SGLN">urn:epc:id:sgln:{sender}</sbdh:Identifier></sbdh:Sender>
      <sbdh:Receiver><sbdh:Identifier Authority="SGLN">urn:epc:id:sgln:{COMPANY}.00000.0</sbdh:Identifier></sbdh:Receiver>
      <sbdh:DocumentIdentification>
        <sbdh:Standard>EPCglobal</sbdh:Standard><sbdh:TypeVersion>1.0</sbdh:TypeVersion>
        <sbdh:InstanceIdentifier>{lot}</sbdh:InstanceIdentifier><sbdh:Type>Events</sbdh:Type>
        <sbdh:CreationDateAndTime>{time}</sbdh:CreationDateAndTime>
      </sbdh:DocumentIdentification>
    </sbdh:StandardBusinessDocumentHeader>
  </EPCISHeader>
  <EPCISBody>
    <EventList>
"""
_WHERE = """<readPoint><id>urn:epc:id:sgln:{sender}</id></readPoint><bizLocation><id>urn:epc:id:sgln:{sender}</id></bizLocation>"""
_COMMISSION = """      <ObjectEvent><eventTime>{time}</eventTime><eventTimeZoneOffset>+01:00</eventTimeZoneOffset>
        <epcList>
{epcs}        </epcList>
        <action>ADD</action><bizStep>urn:epcglobal:cbv:bizstep:commissioning</bizStep><disposition>urn:epcglobal:cbv:disp:active</disposition>{where}
        <extension><ilmd><cbvmda:lotNumber>{lot}</cbvmda:lotNumber><cbvmda:itemExpirationDate>{expiry}</cbvmda:itemExpirationDate></ilmd></extension>
      </ObjectEvent>
"""
_PACK = """      <AggregationEvent><eventTime>{time}</eventTime><eventTimeZoneOffset>+01:00</eventTimeZoneOffset>
        <parentID>{parent}</parentID>
        <childEPCs>
{epcs}        </childEPCs>
        <action>ADD</action><bizStep>urn:epcglobal:cbv:bizstep:packing</bizStep><disposition>urn:epcglobal:cbv:disp:in_progress</disposition>{where}
      </AggregationEvent>
"""
_SHIP = """      <ObjectEvent><eventTime>{time}</eventTime><eventTimeZoneOffset>+01:00</eventTimeZoneOffset>
        <epcList>
{epcs}        </epcList>
        <action>OBSERVE</action><bizStep>urn:epcglobal:cbv:bizstep:shipping</bizStep><disposition>urn:epcglobal:cbv:disp:in_transit</disposition>{where}
        <extension><sourceList><source type="urn:epcglobal:cbv:sdt:owning_party">urn:epc:id:sgln:{sender}</source></sourceList></extension>
      </ObjectEvent>
"""
_TAIL = """    </EventList>
  </EPCISBody>
</epcis:EPCISDocument>
"""


def _epc_lines(uris: list[str]) -> str:
    return "".join(f"          <epc>{u}</epc>\n" for u in uris)


def write_doc(path: Path, doc: Doc) -> None:
    """Write `doc` as EPCIS 1.2 XML: per case one commissioning event of its units, then
    one packing event per inner pack and one for the case; one per pallet; then one
    shipping event of the shipped pallets (none when it ships nothing)."""
    sender = cmo_sgln(doc.sender)
    time = f"{doc.expiry.year - 3}-01-01T08:00:00Z"
    where = _WHERE.format(sender=sender)
    k = doc.first_sscc
    with path.open("w", encoding="utf-8", buffering=1 << 20) as out:
        out.write(_HEAD.format(sender=sender, lot=doc.lot, time=time, COMPANY=COMPANY))
        for p, lo, hi in doc.commission:
            uris = (
                pl.select(pl.lit(f"urn:epc:id:sgtin:{COMPANY}.{item_ref(p)}.") + pl.lit(serials(p, lo, hi)))
                .to_series()
                .to_list()
            )  # fmt: skip
            layout = packing(hi - lo)
            per_case = UNITS_PER_INNER * INNERS_PER_CASE
            for pal in range(layout.pallets):
                pallet_sscc = k
                k += 1
                cases = []
                first_case = pal * CASES_PER_PALLET
                for case in range(first_case, min(first_case + CASES_PER_PALLET, layout.cases)):
                    units = uris[case * per_case : (case + 1) * per_case]
                    case_sscc = k
                    k += 1
                    out.write(
                        _COMMISSION.format(
                            time=time, epcs=_epc_lines(units), where=where, lot=doc.lot,
                            expiry=doc.expiry.isoformat(),
                        )
                    )  # fmt: skip
                    inners = []
                    for i in range(0, len(units), UNITS_PER_INNER):
                        inner = sscc(k)
                        k += 1
                        inners.append(inner)
                        out.write(
                            _PACK.format(
                                time=time, parent=inner, where=where,
                                epcs=_epc_lines(units[i : i + UNITS_PER_INNER]),
                            )
                        )  # fmt: skip
                    out.write(
                        _PACK.format(
                            time=time, parent=sscc(case_sscc), where=where, epcs=_epc_lines(inners)
                        )
                    )
                    cases.append(sscc(case_sscc))
                out.write(
                    _PACK.format(time=time, parent=sscc(pallet_sscc), where=where, epcs=_epc_lines(cases))
                )  # fmt: skip
        if doc.ship:
            out.write(
                _SHIP.format(
                    time=time, epcs=_epc_lines([sscc(s) for s in doc.ship]), where=where,
                    sender=sender,
                )
            )  # fmt: skip
        out.write(_TAIL)
