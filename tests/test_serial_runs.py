"""The run-length encoded serial status (transforms/serial_runs.py), checked against a
plain one-row-per-serial model."""

from __future__ import annotations

import itertools

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import serial_runs as sr
from transforms.serials import _numbered


def runs(*rows: tuple[int, int, int, str | None, int | None]) -> pl.DataFrame:
    """Runs from (pid, lo, hi, cmo_id, assign_seq); the other status columns at their default."""
    frame = pl.DataFrame(
        [{"pid": p, "lo": lo, "hi": hi, "cmo_id": c, "assign_seq": a} for p, lo, hi, c, a in rows],
        schema={"pid": pl.Int32, "lo": pl.Int64, "hi": pl.Int64, "cmo_id": pl.String,
                "assign_seq": pl.Int64},
    )  # fmt: skip
    base = frame.select(sr.available_runs(pl.col("pid"), pl.col("lo"), pl.col("hi")))
    return base.with_columns(frame.get_column("cmo_id"), frame.get_column("assign_seq"))


def per_serial(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    """One tuple per serial: (pid, pseq, cmo_id, its own assign_seq, export_count)."""
    out = []
    for r in frame.sort("pid", "lo").iter_rows(named=True):
        for x in range(r["lo"], r["hi"]):
            seq = None if r["assign_seq"] is None else r["assign_seq"] + x - r["lo"]
            out.append((r["pid"], x, r["cmo_id"], seq, r["export_count"]))
    return out


def test_neighbours_with_the_same_status_and_continuing_assignment_merge() -> None:
    merged = sr.compress(runs((1, 0, 5, "C1", 10), (1, 5, 8, "C1", 15), (1, 8, 9, None, None)))
    assert merged.select("lo", "hi", "cmo_id", "assign_seq").rows() == [
        (0, 8, "C1", 10),
        (8, 9, None, None),
    ]


def test_a_jump_in_assignment_order_or_product_keeps_runs_apart() -> None:
    kept = sr.compress(runs((1, 0, 5, "C1", 10), (1, 5, 8, "C1", 99), (2, 8, 9, "C1", 103)))
    assert kept.height == 3


def test_take_cuts_the_first_serials_in_the_given_order() -> None:
    candidates = runs((1, 10, 15, "C1", 5), (1, 0, 3, "C1", 1))  # oldest assigned first
    taken = sr.take(candidates.sort("assign_seq"), 4)
    assert taken.select("lo", "hi", "assign_seq", "offset").rows() == [
        (0, 3, 1, 0),
        (10, 11, 5, 3),
    ]


def test_take_from_the_end_takes_the_most_recently_assigned_first() -> None:
    candidates = runs((1, 0, 10, "C1", 100))
    taken = sr.take(candidates, 3, from_end=True)
    assert taken.select("lo", "hi", "assign_seq", "offset").rows() == [(7, 10, 107, 0)]


def test_overlay_splits_a_run_and_numbers_the_patch_from_its_first_serial() -> None:
    patched = sr.overlay(
        runs((1, 0, 10, None, None)),
        pl.DataFrame({"pid": [1], "lo": [3], "hi": [6], "cmo_id": ["C9"], "assign_seq": [50]}),
        ["cmo_id", "assign_seq"],
    )
    assert patched.select("lo", "hi", "cmo_id", "assign_seq").rows() == [
        (0, 3, None, None),
        (3, 6, "C9", 50),
        (6, 10, None, None),
    ]


def test_overlay_unless_null_keeps_a_serials_value_where_the_patch_has_none() -> None:
    before = sr.overlay(
        runs((1, 0, 10, "C1", 0)),
        pl.DataFrame({"pid": [1], "lo": [0], "hi": [10], "lot": ["OLD"]}),
        ["lot"],
    )
    patches = pl.DataFrame(
        {"pid": [1, 1], "lo": [0, 5], "hi": [5, 10], "lot": ["NEW", None], "shipped": [True] * 2}
    )
    patched = sr.overlay(before, patches, ["lot", "shipped"], unless_null=["lot"])
    assert patched.select("lo", "hi", "lot", "shipped").rows() == [
        (0, 5, "NEW", True),
        (5, 10, "OLD", True),
    ]
    plain = sr.overlay(before, patches, ["lot", "shipped"])
    assert plain.select("lo", "hi", "lot").rows() == [(0, 5, "NEW"), (5, 10, None)]


def test_slices_of_one_order_are_consecutive_positions() -> None:
    candidates = runs((1, 0, 4, None, None), (1, 6, 10, None, None)).with_columns(
        pl.lit("g").alias("g")
    )
    slices = pl.DataFrame({"g": ["g", "g"], "k": [0, 1], "start": [0, 3], "end": [3, 6]})
    pieces = sr.take_slices(candidates, slices, by="g")
    assert pieces.select("k", "ord", "lo", "hi").rows() == [
        (0, 0, 0, 3),
        (1, 0, 3, 4),
        (1, 1, 6, 8),
    ]


def test_ranges_of_and_expand_are_inverse() -> None:
    serials = pl.DataFrame({"pid": [1, 1, 1, 2, 1], "pseq": [0, 1, 2, 0, 7]})
    ranges = sr.ranges_of(serials)
    assert ranges.select("pid", "lo", "hi").rows() == [(1, 0, 3), (1, 7, 8), (2, 0, 1)]
    assert sorted(sr.expand(ranges).rows()) == sorted(serials.rows())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 30), st.sampled_from([None, "A", "B"])),
        max_size=40,
    ),
    st.sampled_from([0, 1 << 22, 1 << 40]),
)
def test_ranges_of_covers_each_serial_once_with_its_value(
    rows: list[tuple[int, int, str | None]], shift: int
) -> None:
    """Against a serial-by-serial model; the shifted numbers take the two-column sort."""
    pid_shift, pseq_shift = (shift, 0) if shift == 1 << 22 else (0, shift)
    serials = pl.DataFrame(
        [(p + pid_shift, q + pseq_shift, v) for p, q, v in rows],
        schema={"pid": pl.Int64, "pseq": pl.Int64, "v": pl.String},
        orient="row",
    )
    ranges = sr.ranges_of(serials, ["v"])
    first = {}
    for p, q, v in serials.rows():
        first.setdefault((p, q), v)
    covered = [(p, q, v) for p, lo, hi, v in ranges.rows() for q in range(lo, hi)]
    assert sorted(covered, key=lambda r: (r[0], r[1])) == covered  # sorted, disjoint
    assert {(p, q) for p, q, _ in covered} == set(first)
    assert len(covered) == len(first)
    # neighbouring ranges differ: a gap, another product or another value
    for (p1, _, hi1, v1), (p2, lo2, _, v2) in itertools.pairwise(ranges.rows()):
        assert (p1, hi1, v1) != (p2, lo2, v2)
    for p, q, v in covered:  # a duplicated serial keeps one of its values
        assert v in {w for pp, qq, w in serials.rows() if (pp, qq) == (p, q)}


patch_strategy = st.lists(
    st.tuples(st.integers(0, 39), st.integers(1, 8), st.sampled_from([None, "A", "B"])),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(patch_strategy)
def test_any_sequence_of_patches_equals_writing_each_serial(
    patches: list[tuple[int, int, str | None]],
) -> None:
    """Patch by patch, the runs describe exactly what writing serial by serial gives."""
    size = 48
    state = sr.compress(runs((1, 0, size, None, None)))
    model: list[tuple[object, ...]] = [(1, x, None, None, 0) for x in range(size)]
    for n, (lo, length, holder) in enumerate(patches):
        hi = min(lo + length, size)
        seq = None if holder is None else 1000 * (n + 1)
        patch = pl.DataFrame(
            {"pid": [1], "lo": [lo], "hi": [hi], "cmo_id": [holder], "assign_seq": [seq],
             "export_count": [n]},
            schema={"pid": pl.Int32, "lo": pl.Int64, "hi": pl.Int64, "cmo_id": pl.String,
                    "assign_seq": pl.Int64, "export_count": pl.Int32},
        )  # fmt: skip
        state = sr.overlay(state, patch, ["cmo_id", "assign_seq", "export_count"])
        for x in range(lo, hi):
            model[x] = (1, x, holder, None if seq is None else seq + x - lo, n)
        assert per_serial(state) == model
        assert sr.compress(state).height == state.height  # already as compact as it gets


def test_new_serials_are_numbered_per_product_in_file_order_however_they_interleave() -> None:
    codes = ["P1", "P2", "P3"]
    interleaved = pl.DataFrame(
        {
            "product_code": [codes[i % 3] for i in range(3003)],
            "serial": [str(i) for i in range(3003)],
        }
    )  # more than 1000 blocks: the general path
    blocked = interleaved.sort("product_code", maintain_order=True)  # 3 blocks: the fast path
    pids, sizes = {"P1": 1, "P2": 2, "P3": 3}, {1: 0, 2: 5, 3: 0}
    for frame in (interleaved, blocked):
        numbered = _numbered(frame, pids, sizes)
        expected = frame.with_columns(
            pl.col("product_code").replace_strict(pids, return_dtype=pl.Int32).alias("pid")
        ).with_columns(
            (pl.int_range(pl.len()).over("pid") + pl.col("pid").replace_strict(sizes)).alias("pseq")
        )
        assert numbered.rows() == expected.select("pid", "pseq", "serial").rows()
