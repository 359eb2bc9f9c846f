"""Serial status as runs: the whole §5 state of tens of millions of serials in a few rows.

Every product's serials are numbered in arrival order (`pseq`, 0, 1, 2, … — the
FIFO order of §5.1).  The status of each serial — holder, assignment order,
exports, partner request, CMO reports, lot — is stored run-length encoded: a *run*
`[lo, hi)` is a stretch of consecutive serials of one product whose status is the
same, except that their assignment numbers go up one by one (`assign_seq` is the
number of the serial at `lo`).  The runs of a product cover `[0, size)` exactly,
without overlap.

Why: the rules of §5 take the oldest serials of a set, so a night's assignments,
exports, returns and requests change a handful of runs instead of millions of
rows; CMO reports (§6) arrive in lots of consecutive serials and stay compact too.
The worst case (every serial different) is one run per serial — still correct.

The functions here are pure Polars over run frames (`RUN_SCHEMA`):

- `compress` merges neighbouring runs with the same status;
- `take` picks the first `n` serials of runs already filtered and sorted in the
  order a rule takes them;
- `overlay` writes new values onto ranges of serials (patches), splitting runs
  where the ranges start and end;
- `expand` lists the serial numbers (`pseq`) of ranges, in order.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

RUN_SCHEMA: dict[str, pl.DataType] = {
    "pid": pl.Int32(),
    "lo": pl.Int64(),
    "hi": pl.Int64(),
    "cmo_id": pl.String(),
    "assign_seq": pl.Int64(),
    "export_count": pl.Int32(),
    "last_export_id": pl.Int64(),
    "request_id": pl.String(),
    "commissioned": pl.Boolean(),
    "shipped": pl.Boolean(),
    "lot": pl.String(),
    "expiry": pl.Date(),
    "decommissioned": pl.Boolean(),
}
# status columns that must be equal for two neighbouring runs to merge
STATUS = [
    "cmo_id",
    "export_count",
    "last_export_id",
    "request_id",
    "commissioned",
    "shipped",
    "lot",
    "expiry",
    "decommissioned",
]
COLUMNS = list(RUN_SCHEMA)
LENGTH = pl.col("hi") - pl.col("lo")


def empty_runs() -> pl.DataFrame:
    return pl.DataFrame(schema=RUN_SCHEMA)


def available_runs(pid: pl.Expr | int, lo: pl.Expr | int, hi: pl.Expr | int) -> list[pl.Expr]:
    """Expressions of a run of new serials in the pool: no holder, nothing reported."""
    return [
        (pid if isinstance(pid, pl.Expr) else pl.lit(pid)).cast(pl.Int32).alias("pid"),
        (lo if isinstance(lo, pl.Expr) else pl.lit(lo)).cast(pl.Int64).alias("lo"),
        (hi if isinstance(hi, pl.Expr) else pl.lit(hi)).cast(pl.Int64).alias("hi"),
        pl.lit(None, pl.String).alias("cmo_id"),
        pl.lit(None, pl.Int64).alias("assign_seq"),
        pl.lit(0, pl.Int32).alias("export_count"),
        pl.lit(None, pl.Int64).alias("last_export_id"),
        pl.lit(None, pl.String).alias("request_id"),
        pl.lit(False).alias("commissioned"),
        pl.lit(False).alias("shipped"),
        pl.lit(None, pl.String).alias("lot"),
        pl.lit(None, pl.Date).alias("expiry"),
        pl.lit(False).alias("decommissioned"),
    ]


def compress(runs: pl.DataFrame) -> pl.DataFrame:
    """Merge neighbouring runs of one product whose status is the same and whose
    assignment numbers continue; drop empty runs.  Sorted by product and `lo`."""
    runs = runs.select(COLUMNS).filter(LENGTH > 0).sort("pid", "lo")
    if runs.height < 2:
        return runs
    prev = [pl.col(c).shift(1) for c in COLUMNS]
    same_status = pl.all_horizontal(
        [pl.col(c).eq_missing(pl.col(c).shift(1)) for c in STATUS]
    ).fill_null(False)
    seq_continues = (pl.col("assign_seq").is_null() & prev[4].is_null()) | (
        pl.col("assign_seq") == prev[4] + (prev[2] - prev[1])
    ).fill_null(False)
    joins = (pl.col("pid") == prev[0]) & (pl.col("lo") == prev[2]) & same_status & seq_continues
    return (
        runs.with_columns((~joins.fill_null(False)).cum_sum().alias("_run"))
        .group_by("_run", maintain_order=True)
        .agg(
            pl.col("pid").first(),
            pl.col("lo").first(),
            pl.col("hi").last(),
            *[pl.col(c).first() for c in ["cmo_id", "assign_seq", *STATUS[1:]]],
        )
        .select(COLUMNS)
    )


def take(candidates: pl.DataFrame, n: int, *, from_end: bool = False) -> pl.DataFrame:
    """The first `n` serials of `candidates`, runs in the order a rule takes them.

    Within a run serials are taken upwards (`lo` first) or, `from_end`, downwards
    (`hi - 1` first: the most recently assigned of the run).  The result keeps the
    candidates' columns, cut to the pieces taken, plus `offset`: the position of the
    piece's first serial in the take order, from 0.
    """
    if n <= 0 or candidates.height == 0:
        return candidates.head(0).with_columns(pl.lit(0, pl.Int64).alias("offset"))
    length = LENGTH
    done_before = length.cum_sum() - length
    need = pl.min_horizontal(pl.lit(n, pl.Int64) - done_before, length)
    taken = candidates.with_columns(done_before.alias("offset"), need.alias("_need")).filter(
        pl.col("_need") > 0
    )
    if from_end:
        cut = pl.col("hi") - pl.col("_need")
        taken = taken.with_columns(
            (pl.col("assign_seq") + (cut - pl.col("lo"))).alias("assign_seq"), cut.alias("lo")
        )
    else:
        taken = taken.with_columns((pl.col("lo") + pl.col("_need")).alias("hi"))
    return taken.drop("_need")


def take_slices(
    candidates: pl.DataFrame, slices: pl.DataFrame, *, by: str, from_end: bool = False
) -> pl.DataFrame:
    """Cut position ranges out of each group's serials, many requests at once.

    `candidates`: runs with a group column `by`, sorted within each group in the
    order a rule takes serials (within a run upwards, or downwards `from_end`).
    `slices`: (`by`, `k`, `start`, `end`): request `k` takes the serials at positions
    `[start, end)` of its group's order.  Returns one row per piece: `k`, `ord` (the
    position of the piece's first serial within its slice) and the candidate's
    columns cut to the piece, sorted by `k`, `ord`.
    """
    cols = [c for c in candidates.columns if c != by]
    c = candidates.with_columns(
        (LENGTH.cum_sum() - LENGTH).over(by).alias("_cs"), LENGTH.alias("_len")
    )
    j = c.join(slices.select(by, "k", "start", "end"), on=by).filter(
        (pl.col("_cs") < pl.col("end")) & (pl.col("_cs") + pl.col("_len") > pl.col("start"))
    )
    a = pl.max_horizontal(pl.col("start") - pl.col("_cs"), pl.lit(0, pl.Int64))
    b = pl.min_horizontal(pl.col("end") - pl.col("_cs"), pl.col("_len"))
    if from_end:
        lo, hi = pl.col("hi") - b, pl.col("hi") - a
    else:
        lo, hi = pl.col("lo") + a, pl.col("lo") + b
    return (
        j.with_columns(
            (pl.col("assign_seq") + (lo - pl.col("lo"))).alias("assign_seq"),
            (pl.col("_cs") + a - pl.col("start")).alias("ord"),
            lo.alias("lo"),
            hi.alias("hi"),
        )
        .select("k", "ord", *cols)
        .sort("k", "ord")
    )


def count(runs: pl.DataFrame) -> int:
    """How many serials the runs hold."""
    return int(runs.select(LENGTH.sum()).item() or 0) if runs.height else 0


def _cut(runs: pl.DataFrame, points: pl.DataFrame) -> pl.DataFrame:
    """Split runs at `points` (pid, at): every point inside a run starts a new piece."""
    starts = (
        pl.concat(
            [
                runs.select("pid", "lo"),
                points.select(
                    pl.col("pid").cast(pl.Int32), pl.col("at").cast(pl.Int64).alias("lo")
                ),
            ]
        )
        .unique()
        .sort("lo")
    )
    owner = runs.rename({"lo": "_run_lo", "hi": "_run_hi"}).sort("_run_lo")
    pieces = starts.join_asof(
        owner,
        left_on="lo",
        right_on="_run_lo",
        by="pid",
        strategy="backward",
        check_sortedness=False,
    ).filter(pl.col("_run_lo").is_not_null() & (pl.col("lo") < pl.col("_run_hi")))
    pieces = pieces.sort("pid", "lo").with_columns(
        pl.min_horizontal(
            pl.col("lo").shift(-1).over("pid").fill_null(pl.col("_run_hi")), pl.col("_run_hi")
        ).alias("hi"),
        (pl.col("assign_seq") + (pl.col("lo") - pl.col("_run_lo"))).alias("assign_seq"),
    )
    return pieces.select(COLUMNS)


def overlay(
    runs: pl.DataFrame,
    patches: pl.DataFrame,
    columns: Sequence[str],
    *,
    unless_null: Sequence[str] = (),
) -> pl.DataFrame:
    """Write `columns` of `patches` (pid, lo, hi, columns…) onto the serials they cover.

    Patches must not overlap.  `assign_seq` in a patch is the number of its first
    serial (the following ones count up).  A column named in `unless_null` is written
    only where the patch's value is not NULL (elsewhere the serial keeps its own).
    Serials outside every patch keep their status; the result is compressed.
    """
    if patches.height == 0:
        return compress(runs)
    points = pl.concat(
        [
            patches.select("pid", pl.col("lo").alias("at")),
            patches.select("pid", pl.col("hi").alias("at")),
        ]
    )
    pieces = _cut(runs, points)
    patch = (
        patches.select(
            pl.col("pid").cast(pl.Int32),
            pl.col("lo").cast(pl.Int64).alias("_p_lo"),
            pl.col("hi").cast(pl.Int64).alias("_p_hi"),
            *[pl.col(c).cast(RUN_SCHEMA[c]).alias(f"_p_{c}") for c in columns],
        )
        .sort("_p_lo")
        .with_columns(pl.lit(True).alias("_hit"))
    )
    joined = pieces.sort("lo").join_asof(
        patch,
        left_on="lo",
        right_on="_p_lo",
        by="pid",
        strategy="backward",
        check_sortedness=False,
    )
    hit = (pl.col("_hit") & (pl.col("lo") < pl.col("_p_hi"))).fill_null(False)
    values = []
    for c in columns:
        new = pl.col(f"_p_{c}")
        if c == "assign_seq":
            new = new + (pl.col("lo") - pl.col("_p_lo"))
        if c in unless_null:
            new = pl.coalesce(new, pl.col(c))
        values.append(pl.when(hit).then(new).otherwise(pl.col(c)).alias(c))
    return compress(joined.with_columns(values))


def expand(ranges: pl.DataFrame, keep: Sequence[str] = ()) -> pl.DataFrame:
    """One row per serial of `ranges` (pid, lo, hi, keep…), in range order then `pseq`."""
    if ranges.height == 0:
        return pl.DataFrame(
            schema={"pid": pl.Int32, "pseq": pl.Int64, **{k: ranges.schema[k] for k in keep}}
        )
    return (
        ranges.select(
            pl.col("pid").cast(pl.Int32),
            pl.int_ranges(pl.col("lo"), pl.col("hi"), dtype=pl.Int64).alias("pseq"),
            *keep,
        )
        .explode("pseq")
        .select("pid", "pseq", *keep)
    )


_PSEQ_LIMIT = 1 << 40  # (pid, pseq) sorts as one Int64 below these
_PID_LIMIT = 1 << 22


def ranges_of(serials: pl.DataFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    """Run-length encode serials (pid, pseq, by…) into ranges (pid, lo, hi, by…):
    consecutive numbers with equal `by` values form one range.  A serial listed twice
    counts once (one of its rows)."""
    if serials.height == 0:
        return pl.DataFrame(
            schema={
                "pid": pl.Int32,
                "lo": pl.Int64,
                "hi": pl.Int64,
                **{b: serials.schema[b] for b in by},
            }
        )
    s = serials.select(pl.col("pid").cast(pl.Int32), pl.col("pseq").cast(pl.Int64), *by)
    ((pid_min, pid_max, pseq_min, pseq_max),) = s.select(
        pl.col("pid").min().alias("a"),
        pl.col("pid").max().alias("b"),
        pl.col("pseq").min().alias("c"),
        pl.col("pseq").max().alias("d"),
    ).rows()
    if min(pid_min, pseq_min) >= 0 and pid_max < _PID_LIMIT and pseq_max < _PSEQ_LIMIT:
        # one Int64 key sorts several times faster than two columns
        s = s.sort(pl.col("pid").cast(pl.Int64) * _PSEQ_LIMIT + pl.col("pseq"))
    else:
        s = s.sort("pid", "pseq")
    pid, pseq = pl.col("pid"), pl.col("pseq")
    repeated = s.select(((pid == pid.shift(1)) & (pseq == pseq.shift(1))).fill_null(False))
    if repeated.to_series().any():  # keep one row of each serial (no copy when none repeats)
        s = s.filter(~repeated.to_series())
    same = (pid == pid.shift(1)) & (pseq == pseq.shift(1) + 1)
    for b in by:
        same = same & pl.col(b).eq_missing(pl.col(b).shift(1))
    start = (~same).fill_null(True)
    flags = s.select(start.alias("start"), start.shift(-1, fill_value=True).alias("end"))
    ends = s.get_column("pseq").filter(flags.get_column("end"))
    return s.filter(flags.get_column("start")).select(
        "pid", pseq.alias("lo"), (ends + 1).alias("hi"), *by
    )
