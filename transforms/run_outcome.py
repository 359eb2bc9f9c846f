"""What a finished night means for the people who run it (SPEC §10.1, §11): the verdict,
whether the night needs a person, which `[notify] on` outcomes it matches, and the
notification's text.  Pure functions of the run summary (the dict of run_summary.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERDICT_GOOD, VERDICT_ATTENTION, VERDICT_FAILED = "All good", "Needs attention", "Failed"
ATTENTION_STATE = "Attention"  # the name of a Completed Prefect state that needs a person
FIRST_WARNINGS = 5  # warnings quoted in a notification


def _failed_deliveries(summary: dict[str, Any]) -> int:
    return int((summary.get("deliveries") or {}).get("failed", 0) or 0)


def _failed_invariants(summary: dict[str, Any]) -> list[str]:
    return [name for name, ok in (summary.get("invariants") or {}).items() if not ok]


def attention_reasons(summary: dict[str, Any]) -> list[str]:
    """Why a completed night needs a person (§11): a file quarantined, a failed delivery, a
    failed invariant.  Empty when it does not (rejected rows are normal business)."""
    totals = summary.get("totals") or {}
    reasons = []
    if totals.get("files_quarantined"):
        reasons.append(f"{totals['files_quarantined']} file(s) quarantined")
    if _failed_deliveries(summary):
        reasons.append(f"{_failed_deliveries(summary)} delivery(ies) failed")
    failed = _failed_invariants(summary)
    if failed:
        reasons.append("invariant(s) failed: " + ", ".join(failed))
    return reasons


def verdict(summary: dict[str, Any] | None, *, failed: bool) -> str:
    """`Failed` for a run that ends with exit 1; else report.html's words (§10.1): `Needs
    attention` for quarantined files, rejected rows, failed deliveries or invariants, or
    warnings; `All good` otherwise."""
    if failed or summary is None:
        return VERDICT_FAILED
    totals = summary.get("totals") or {}
    if attention_reasons(summary) or totals.get("rows_rejected") or summary.get("warnings"):
        return VERDICT_ATTENTION
    return VERDICT_GOOD


def run_events(summary: dict[str, Any] | None, *, failed: bool) -> set[str]:
    """The `[notify] on` outcomes (§2, §11) a run matches: `failure` (exit 1), `quarantine`
    (a file quarantined), `rejects` (a row rejected), `success` (every run)."""
    events = {"success"}
    if failed or summary is None:
        events.add("failure")
    totals = (summary or {}).get("totals") or {}
    if totals.get("files_quarantined"):
        events.add("quarantine")
    if totals.get("rows_rejected"):
        events.add("rejects")
    return events


def should_notify(on: tuple[str, ...], summary: dict[str, Any] | None, *, failed: bool) -> bool:
    return bool(set(on) & run_events(summary, failed=failed))


@dataclass(frozen=True)
class Message:
    title: str
    body: str


def notification(
    summary: dict[str, Any] | None,
    *,
    tenant: str | None,
    run_id: str | None,
    failed: bool,
    report: str | None,
    error: str | None = None,
) -> Message:
    """One message (§11): tenant, run id, verdict, counts, the first warnings, and where
    report.html is (or the error of a run that stopped before its summary)."""
    word = verdict(summary, failed=failed)
    who = f"cmi {tenant}" if tenant else "cmi"
    title = f"{who}: {word} — run {run_id or '(not started)'}"
    lines = [f"tenant: {tenant or '-'}", f"run: {run_id or '-'}", f"verdict: {word}"]
    if error:
        lines.append(f"error: {error}")
    if summary is not None:
        t = summary.get("totals") or {}
        lines.append(
            f"files: {t.get('files_seen', 0)} seen, {t.get('files_applied', 0)} applied, "
            f"{t.get('files_duplicate', 0)} duplicate, {t.get('files_quarantined', 0)} "
            "quarantined"
        )
        lines.append(
            f"rows: {t.get('rows_read', 0)} read, {t.get('rows_applied', 0)} applied, "
            f"{t.get('rows_rejected', 0)} rejected"
        )
        d = summary.get("deliveries")
        if d:
            lines.append(
                f"deliveries: {d.get('delivered', 0)} delivered, {d.get('failed', 0)} failed, "
                f"{d.get('pending', 0)} pending"
            )
        reasons = attention_reasons(summary)
        if reasons:
            lines.append("needs a person: " + "; ".join(reasons))
        warnings = list(summary.get("warnings") or [])
        if warnings:
            lines.append(f"warnings ({len(warnings)}):")
            lines += [f"- {w}" for w in warnings[:FIRST_WARNINGS]]
            if len(warnings) > FIRST_WARNINGS:
                lines.append(f"- … and {len(warnings) - FIRST_WARNINGS} more in the report")
    if report:
        lines.append(f"report: {report}")
    return Message(title, "\n".join(lines))
