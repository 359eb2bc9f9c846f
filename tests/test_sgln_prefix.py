"""An SGLN's company prefix (SPEC §4.2 `sgln`, §6 *Sender* and *Identifiers*): "company
prefix and location reference are digits, together 12 digits" — the spec sets no other
bound on the prefix.  A CMO's sgln and the SGLNs of shipping files are read by that one
rule: a prefix of fewer than 6 digits is as good as a longer one (an SGTIN's or an SSCC's
company prefix keeps its 6-12 digits of the EPC Tag Data Standard: the spec does not
define those and the tests of `test_epc_identifiers.py` hold them)."""

from __future__ import annotations

import csv as csvlib
import io
from pathlib import Path

import duckdb
import polars as pl
import pytest
from epcis_docs import Doc, Ev, to_jsonld, to_xml
from helpers_serials import rows
from hypothesis import given
from hypothesis import strategies as st

from schemas.base import validate_rows
from schemas.master_data import CmosFile
from tests.pipeline_helpers import csv, report, run_day, summary
from transforms.codes import gs1_check_digit
from transforms.epc import parse_epc, parse_epcs_frame, parse_epcs_sql, sgln_key

P1 = "00614141123452"  # GTIN of urn:epc:id:sgtin:0614141.012345.*
SHORT = "12345.0000012.0"  # a 5-digit company prefix, 12 digits with the location reference
SHORT_GLN = "1234500000126"  # its GLN-13: the 12 digits and their check digit


def _sgln_rejected(value: str) -> bool:
    return validate_rows(CmosFile, rows(cmo_id="C1", sgln=value))[1].height > 0


def _parsed_alike(uri: str) -> dict[str, object]:
    """The SGLN as the three parsers of `transforms.epc` read it; they must agree."""
    one = parse_epc(uri)
    frame = parse_epcs_frame(pl.DataFrame({"epc": [uri]})).row(0, named=True)
    con = duckdb.connect()
    con.register("_t", pl.DataFrame({"epc": [uri]}))
    sql = con.sql(parse_epcs_sql("_t")).pl().row(0, named=True)
    assert (frame["epc_scheme"], frame["sgln"]) == (sql["epc_scheme"], sql["sgln"])
    assert (one.scheme, one.sgln) == (sql["epc_scheme"], sql["sgln"]), uri
    return {"scheme": one.scheme, "sgln": one.sgln, "gln": one.gln}


@pytest.mark.parametrize(
    "value", [SHORT, "1.00000000001.0", "1234.56789012.AB-1", "123456789012..0"]
)
def test_a_cmo_sgln_of_12_digits_is_accepted_whatever_its_prefix_length(value: str) -> None:
    assert not _sgln_rejected(value)


@pytest.mark.parametrize(
    "value", [".123456789012.0", "12345.000001.0", "12345.00000123.0", "12345.0000012"]
)
def test_a_cmo_sgln_without_a_prefix_or_not_of_12_digits_is_rejected(value: str) -> None:
    assert _sgln_rejected(value)


@given(prefix_len=st.integers(1, 12), digits=st.text("0123456789", min_size=12, max_size=12))
def test_master_data_and_shipping_files_read_an_sgln_alike(prefix_len: int, digits: str) -> None:
    """Any split of 12 digits into a prefix (1-12) and a location reference is one SGLN,
    for the master data and for the EPC parsers alike, with its GLN-13."""
    bare = f"{digits[:prefix_len]}.{digits[prefix_len:]}.0"
    assert not _sgln_rejected(bare)
    assert sgln_key(bare) == bare
    assert _parsed_alike(f"urn:epc:id:sgln:{bare}") == {
        "scheme": "sgln", "sgln": bare, "gln": digits + gs1_check_digit(digits),
    }  # fmt: skip


@pytest.mark.parametrize(
    "uri", ["urn:epc:id:sgln:.123456789012.0", "urn:epc:id:sgln:12345.000001.0"]
)
def test_an_sgln_without_a_prefix_or_not_of_12_digits_is_malformed(uri: str) -> None:
    assert _parsed_alike(uri)["scheme"] == "malformed"
    assert sgln_key(uri) is None


def _master(sgln: str) -> dict[str, str | bytes]:
    return {
        "products_a.csv": csv("product_code,product_name", f"{P1},Demo"),
        "cmos_a.csv": csv(
            "cmo_id,cmo_name,city,country,produceable_products,sgln",
            f"SHORTCO,Short Prefix Pharma,Mannheim,DE,{P1},{sgln}",
        ),
        "serial_pool_a.csv": csv("product_code,serial", f"{P1},S1", f"{P1},S2"),
        "assignments_a.csv": csv("cmo_id,product_code,quantity", f"SHORTCO,{P1},2"),
    }


@pytest.mark.parametrize(
    ("ext", "sender", "authority"),
    [("xml", None, "SGLN"), ("jsonld", None, "SGLN"), ("xml", SHORT_GLN, "GLN")],
)
def test_a_cmo_with_a_short_prefix_sgln_is_found_as_the_sender(
    tmp_path: Path, ext: str, sender: str | None, authority: str
) -> None:
    """The whole run: the CMO is applied with its sgln, and a document naming that SGLN
    (bizLocation; or the GLN of its 12 digits as the SBDH sender) is the CMO's: applied,
    its serials commissioned OK — not quarantined for an unknown sender, and the SGLN not
    reported MALFORMED_EPC."""
    assert "123450000012" + gs1_check_digit("123450000012") == SHORT_GLN
    location = None if sender else f"urn:epc:id:sgln:{SHORT}"
    doc = Doc(
        [Ev(biz_step="commissioning", biz_location=location, lot="L1",
            epcs=["urn:epc:id:sgtin:0614141.012345.S1", "urn:epc:id:sgtin:0614141.012345.S2"])],
        sender=sender, authority=authority,
    )  # fmt: skip
    files = _master(SHORT)
    files[f"shipping_a.{ext}"] = to_xml(doc) if ext == "xml" else to_jsonld(doc)
    out = run_day(tmp_path, "2026-11-23T02:00:00", files)
    run_id = out["run_id"]
    assert report(tmp_path, run_id, "rejects.csv").splitlines()[1:] == []
    shipping = next(f for f in summary(tmp_path, run_id)["files"] if f["kind"] == "shipping")
    assert shipping["outcome"] == "applied", shipping
    rec = list(
        csvlib.DictReader(io.StringIO(report(tmp_path, run_id, "shipping_reconciliation.csv")))
    )
    assert [(r["sender_cmo_id"], r["ok"], r["malformed_epc"]) for r in rec] == [
        ("SHORTCO", "2", "0")
    ]
    cmos = list(csvlib.DictReader(io.StringIO(report(tmp_path, run_id, "cmos.csv"))))
    assert [(c["cmo_id"], c["sgln"]) for c in cmos] == [("SHORTCO", SHORT)]
