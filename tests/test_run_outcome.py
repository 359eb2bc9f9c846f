"""What a night means for the people who run it (SPEC §10.1, §11): the verdict, the
`Attention` state, the `[notify] on` outcomes and the notification's text — pure rules."""

from __future__ import annotations

from typing import Any

import pytest

from transforms.run_outcome import (
    ATTENTION_STATE,
    attention_reasons,
    notification,
    run_events,
    should_notify,
    verdict,
)


def summary(**over: Any) -> dict[str, Any]:
    totals = {"files_seen": 3, "files_applied": 3, "files_duplicate": 0, "files_quarantined": 0,
              "rows_read": 10, "rows_applied": 10, "rows_rejected": 0}  # fmt: skip
    totals.update(over.pop("totals", {}))
    doc = {"run_id": "20261123T020000", "totals": totals, "warnings": [],
           "invariants": {"serial_once_per_product": True}}  # fmt: skip
    doc.update(over)
    return doc


def test_a_clean_night_needs_nobody() -> None:
    doc = summary()
    assert attention_reasons(doc) == []
    assert verdict(doc, failed=False) == "All good"
    assert run_events(doc, failed=False) == {"success"}


def test_a_quarantined_file_needs_a_person() -> None:
    doc = summary(totals={"files_quarantined": 2})
    assert attention_reasons(doc) == ["2 file(s) quarantined"]
    assert verdict(doc, failed=False) == "Needs attention"
    assert run_events(doc, failed=False) == {"success", "quarantine"}


def test_a_failed_delivery_needs_a_person() -> None:
    doc = summary(deliveries={"delivered": 3, "already_there": 0, "failed": 1, "pending": 1})
    assert attention_reasons(doc) == ["1 delivery(ies) failed"]


def test_a_failed_invariant_needs_a_person() -> None:
    doc = summary(invariants={"serial_once_per_product": True, "consumed_within_quantity": False})
    assert attention_reasons(doc) == ["invariant(s) failed: consumed_within_quantity"]


def test_rejected_rows_are_normal_business_not_attention() -> None:
    """§1: rows may be rejected — the state stays Completed; report.html still says why."""
    doc = summary(totals={"rows_rejected": 4})
    assert attention_reasons(doc) == []
    assert verdict(doc, failed=False) == "Needs attention"
    assert run_events(doc, failed=False) == {"success", "rejects"}


def test_a_warning_alone_is_needs_attention_in_the_report() -> None:
    assert verdict(summary(warnings=["a file waited"]), failed=False) == "Needs attention"


def test_a_failed_run_is_failure() -> None:
    assert verdict(summary(), failed=True) == "Failed"
    assert verdict(None, failed=True) == "Failed"
    assert "failure" in run_events(None, failed=True)
    assert ATTENTION_STATE == "Attention"


@pytest.mark.parametrize(
    ("on", "doc", "failed", "sent"),
    [
        (("failure", "quarantine"), summary(), False, False),
        (("failure", "quarantine"), summary(totals={"rows_rejected": 1}), False, False),
        (("rejects",), summary(totals={"rows_rejected": 1}), False, True),
        (("failure", "quarantine"), summary(totals={"files_quarantined": 1}), False, True),
        (("failure",), summary(), True, True),
        (("success",), summary(), False, True),
        ((), summary(), True, False),
    ],
)
def test_notify_only_for_outcomes_in_on(
    on: tuple[str, ...], doc: dict[str, Any], failed: bool, sent: bool
) -> None:
    assert should_notify(on, doc, failed=failed) is sent


def test_the_message_names_tenant_run_verdict_counts_warnings_and_report() -> None:
    doc = summary(
        totals={"files_quarantined": 1, "rows_rejected": 2},
        warnings=[f"warning number {i}" for i in range(8)],
        deliveries={"delivered": 2, "already_there": 0, "failed": 1, "pending": 1},
    )
    m = notification(doc, tenant="acme", run_id="20261123T020000", failed=False,
                     report="/srv/out/reports/20261123T020000/report.html")  # fmt: skip
    assert m.title == "cmi acme: Needs attention — run 20261123T020000"
    body = m.body
    assert "tenant: acme" in body and "run: 20261123T020000" in body
    assert "verdict: Needs attention" in body
    assert "files: 3 seen, 3 applied, 0 duplicate, 1 quarantined" in body
    assert "rows: 10 read, 10 applied, 2 rejected" in body
    assert "deliveries: 2 delivered, 1 failed, 1 pending" in body
    assert "- warning number 4" in body and "warning number 5" not in body  # the first five
    assert "and 3 more" in body
    assert body.endswith("report: /srv/out/reports/20261123T020000/report.html")


def test_the_message_of_a_run_that_stopped_names_the_error() -> None:
    m = notification(None, tenant=None, run_id="20261123T020000", failed=True, report=None,
                     error="OSError: [Errno 28] No space left on device")  # fmt: skip
    assert m.title == "cmi: Failed — run 20261123T020000"
    assert "error: OSError: [Errno 28] No space left on device" in m.body
