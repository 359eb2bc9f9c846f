"""The contract reports of the outbox and the contract invariants (SPEC §10, §8).

Every report is a Polars frame with exactly the §10 columns, in a deterministic
order: booleans `Y`/`N`, dates `YYYY-MM-DD` strings, quantities integers, blank
cells null.  `contracts.csv` and `contract_balance.csv` are state snapshots;
`contract_log.csv` and `allocations.csv` hold what one run did.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb
import polars as pl

from schemas.contracts import REPORT_COLUMNS
from transforms.allocation import AVAILABLE_SQL, RAW_AVAILABLE_SQL


def _yn(column: str) -> str:
    return f"CASE WHEN {column} THEN 'Y' ELSE 'N' END"


def _day(column: str) -> str:
    return f"strftime({column}, '%Y-%m-%d')"


def contracts_report(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """`contracts.csv`: every contract header, by `contract_id`."""
    frame = con.sql(
        f"""SELECT contract_id, description, contract_type, {_yn("logistic")} AS logistic,
                  customer, contract_key, supplier, currency, warehouse,
                  {_yn("off_contract_sales")} AS off_contract_sales,
                  {_day("start_date")} AS start_date, {_day("end_date")} AS end_date,
                  {_yn("active")} AS active,
                  strftime(activated_at, '%Y-%m-%dT%H:%M:%S') AS activated_at, status
           FROM contracts ORDER BY contract_id"""
    ).pl()
    return frame.select(REPORT_COLUMNS["contracts.csv"])


def contract_balance_report(con: duckdb.DuckDBPyConnection, business_date: dt.date) -> pl.DataFrame:
    """`contract_balance.csv`: one row per contract line, by contract and line.

    `contract_quantity` in contract units (blank = none); `received`, `ncc`,
    `consumed`, `available` in stock units.  `start_date` / `end_date` are the
    line's effective validity (the line's dates within the header's);
    `expired` = Y when the effective end date is before `business_date`.
    """
    frame = con.sql(
        f"""
        WITH b AS (
            SELECT l.*, c.contract_type, c.customer AS h_customer,
                   coalesce(l.warehouse, c.warehouse) AS eff_warehouse,
                   CASE WHEN l.start_date IS NULL THEN c.start_date
                        WHEN c.start_date IS NULL THEN l.start_date
                        ELSE greatest(l.start_date, c.start_date) END AS eff_start,
                   CASE WHEN l.end_date IS NULL THEN c.end_date
                        WHEN c.end_date IS NULL THEN l.end_date
                        ELSE least(l.end_date, c.end_date) END AS eff_end,
                   {AVAILABLE_SQL} AS available
            FROM contract_lines l JOIN contracts c USING (contract_id))
        SELECT contract_id, line_no, contract_type, item, eff_warehouse AS warehouse,
               h_customer AS customer, status, contract_quantity, contract_unit, unit_factor,
               received, ncc, consumed, available,
               {_day("reception_date")} AS reception_date,
               {_day("eff_start")} AS start_date, {_day("eff_end")} AS end_date,
               CASE WHEN eff_end IS NOT NULL AND eff_end < ?::DATE THEN 'Y' ELSE 'N' END AS expired,
               {_yn("auto_assign")} AS auto_assign
        FROM b ORDER BY contract_id, line_no""",
        params=[business_date],
    ).pl()
    return frame.select(REPORT_COLUMNS["contract_balance.csv"])


def _runs(run_ids: str | Sequence[str]) -> list[str]:
    return [run_ids] if isinstance(run_ids, str) else list(run_ids)


def _of_runs(runs: list[str]) -> str:
    """`run_id IN (?, …)`, one parameter a run: a filter DuckDB checks against each row
    group's range of run ids (the rows are stored in run order), so a report reads the
    rows of its runs, not every row of every night before."""
    return f"run_id IN ({', '.join('?' * len(runs))})" if runs else "FALSE"


def contract_log_report(
    con: duckdb.DuckDBPyConnection, run_ids: str | Sequence[str]
) -> pl.DataFrame:
    """`contract_log.csv`: the log events of the run (or of the runs, in that order), in the
    order they happened."""
    runs = _runs(run_ids)
    frame = con.sql(
        f"""SELECT strftime(logged_at, '%Y-%m-%dT%H:%M:%S') AS logged_at, contract_id, line_no,
                  event, order_type, order_no, quantity, source_file
           FROM contract_log WHERE {_of_runs(runs)}
           ORDER BY list_position(?::VARCHAR[], run_id), seq""",
        params=[*runs, runs],
    ).pl()
    return frame.select(REPORT_COLUMNS["contract_log.csv"])


def allocations_report(
    con: duckdb.DuckDBPyConnection, run_ids: str | Sequence[str]
) -> pl.DataFrame:
    """`allocations.csv`: the run's order lines (or the runs', in that order) in processing
    order (`reason` blank when linked)."""
    runs = _runs(run_ids)
    frame = con.sql(
        f"""SELECT order_no, order_line, {_day("order_date")} AS order_date, customer, item,
                   quantity, contract_id, line_no, reason, detail
            FROM contract_allocations WHERE {_of_runs(runs)}
            ORDER BY list_position(?::VARCHAR[], run_id), seq""",
        params=[*runs, runs],
    ).pl()
    return frame.select(REPORT_COLUMNS["allocations.csv"])


def contract_invariants(con: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    """§8: on every contract line consumed <= contract quantity (where set) and available >= 0."""
    within, not_negative = con.execute(
        f"""SELECT
              coalesce(bool_and(l.contract_quantity IS NULL
                                OR l.consumed <= l.contract_quantity * l.unit_factor), TRUE),
              coalesce(bool_and({RAW_AVAILABLE_SQL} >= 0), TRUE)
            FROM contract_lines l"""
    ).fetchall()[0]
    return {
        "contract_consumed_within_quantity": bool(within),
        "contract_available_not_negative": bool(not_negative),
    }
