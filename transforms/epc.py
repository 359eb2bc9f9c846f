"""EPC URIs of EPCIS documents: SGTIN, SSCC and SGLN (SPEC §6 *Identifiers*).

Rules (GS1 EPC Tag Data Standard, pure-identity URIs):

- `urn:epc:id:sgtin:<company prefix>.<indicator + item reference>.<serial>` —
  company prefix 6–12 digits, prefix + indicator/item reference = 13 digits.
  GTIN-14 = indicator digit + company prefix + item reference + GS1 check digit.
  The serial is percent-decoded (`%22` → `"`) and must then be 1–20 characters of
  GS1 character set 82.
- `urn:epc:id:sscc:<company prefix>.<extension + serial reference>` — 17 digits
  in all; SSCC-18 = extension digit + company prefix + serial reference + check digit.
- `urn:epc:id:sgln:<company prefix>.<location reference>.<extension>` — company
  prefix and location reference are digits, together 12 (SPEC §4.2, §6 set no other
  bound on the prefix: one of fewer than 6 digits counts too), plus an extension; it is written `prefix.location.extension` (the form of
  `cmos.sgln`), GLN-13 = the 12 digits + check digit.

GS1 Digital Link URIs name the same objects (one object however written):

- `http(s)://<any host>/01/<GTIN-14>/21/<serial>` is that SGTIN (the key qualifiers
  `/22/<cpv>` and `/10/<lot>` may stand before `/21/`; further path segments, the
  query and a fragment are ignored).  The GTIN's check digit must be right; the
  serial is percent-decoded and must then be 1–20 characters of set 82.
- `http(s)://<any host>/00/<SSCC-18>` is that SSCC (check digit right).

Anything else that is a URI (`urn:epc:id:grai:…`, class-level identifiers such as
`urn:epc:class:lgtin:…`, `urn:epc:idpat:…` or a Digital Link without `/21/`) is an
*other* identifier: not an error, not a serial.  Text that is not a URI at all,
or an SGTIN/SSCC/SGLN URI or a Digital Link that breaks the rules, is *malformed*.

Three implementations of the same rules, held together by property tests:
`parse_epcs_frame` (vectorised Polars, used on the EPC lists of whole documents
as they are staged), `parse_epcs_sql` (vectorised DuckDB SQL, for identifiers
already in the store) and `parse_epc` (one value, pure Python).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

import polars as pl

from transforms.codes import gs1_check_digit, gs1_check_digit_expr

SGTIN_PREFIX = "urn:epc:id:sgtin:"
SSCC_PREFIX = "urn:epc:id:sscc:"
SGLN_PREFIX = "urn:epc:id:sgln:"

# GS1 AI(21) character set 82, as a regex class (SPEC §5).
_CS82 = r"""[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]"""
# A raw serial: characters of set 82 (a literal % only as a %xx escape of ASCII).
_RAW_SERIAL = r"""([!"&'()*+,\-./0-9:;<=>?A-Z_a-z]|%[2-7][0-9A-Fa-f])+"""
_URI = r"[A-Za-z][A-Za-z0-9+.\-]*:.+"

_SGTIN_RE = re.compile(r"urn:epc:id:sgtin:([0-9]+)\.([0-9]+)\.(.*)", re.S)
_SSCC_RE = re.compile(r"urn:epc:id:sscc:([0-9]+)\.([0-9]+)", re.S)
_SGLN_RE = re.compile(r"urn:epc:id:sgln:([0-9]+)\.([0-9]*)\.(.+)", re.S)
# GS1 Digital Link, any host: an instance-level SGTIN (groups: GTIN, serial) or an SSCC
_DL_START = "(?i:https?)://[^/?#]+/"
_DL_SGTIN = _DL_START + r"01/([^/?#]*)(?:/22/[^/?#]*)?(?:/10/[^/?#]*)?/21/([^/?#]*)(?:[/?#].*)?"
_DL_SSCC = _DL_START + r"00/([^/?#]*)(?:[/?#].*)?"
_DL_SGTIN_RE = re.compile(_DL_SGTIN, re.S)
_DL_SSCC_RE = re.compile(_DL_SSCC, re.S)
# a raw Digital Link serial: set 82 but the path's own `/` and `?` (a literal % only as an
# %xx escape of ASCII)
_DL_RAW_SERIAL = r"""([!"&'()*+,\-.0-9:;<=>A-Z_a-z]|%[2-7][0-9A-Fa-f])+"""


@dataclass(frozen=True)
class Epc:
    """One EPC URI, parsed.  `scheme` is `sgtin`, `sscc`, `sgln`, `other` or `malformed`."""

    uri: str
    scheme: str
    product_code: str | None = None  # GTIN-14 of an SGTIN
    serial: str | None = None  # percent-decoded AI(21) serial of an SGTIN
    sscc: str | None = None  # SSCC-18
    sgln: str | None = None  # `prefix.location.extension`
    gln: str | None = None  # GLN-13 of an SGLN
    reason: str | None = None  # why it is malformed

    @property
    def malformed(self) -> bool:
        return self.scheme == "malformed"


def _bad(uri: str, reason: str) -> Epc:
    return Epc(uri, "malformed", reason=reason)


def _prefix_ok(cp: str, digits: int, rest: str, shortest: int = 6) -> bool:
    return shortest <= len(cp) <= 12 and len(cp) + len(rest) == digits


# the shortest company prefix, by scheme number (1 SGTIN, 2 SSCC, 3 SGLN; module docstring)
_SHORTEST_PREFIX = {1: 6, 2: 6, 3: 1}


def parse_epc(uri: str) -> Epc:
    """Parse one EPC URI (surrounding blanks ignored) by the rules of the module docstring."""
    text = uri.strip()
    if text.startswith(SGTIN_PREFIX):
        m = _SGTIN_RE.fullmatch(text)
        if not m or not _prefix_ok(m[1], 13, m[2]):
            return _bad(
                text,
                "an SGTIN needs a 6-12 digit company prefix and 13 digits with the item reference",
            )
        if not re.fullmatch(_RAW_SERIAL, m[3]):
            return _bad(text, "the SGTIN serial is empty or has characters outside GS1 set 82")
        serial = unquote(m[3])
        if not re.fullmatch(_CS82 + "{1,20}", serial):
            return _bad(text, "the SGTIN serial must have 1 to 20 characters of GS1 set 82")
        body = m[2][0] + m[1] + m[2][1:]
        return Epc(text, "sgtin", product_code=body + gs1_check_digit(body), serial=serial)
    if text.startswith(SSCC_PREFIX):
        m = _SSCC_RE.fullmatch(text)
        if not m or not _prefix_ok(m[1], 17, m[2]):
            return _bad(text, "an SSCC needs a 6-12 digit company prefix and 17 digits in all")
        body = m[2][0] + m[1] + m[2][1:]
        return Epc(text, "sscc", sscc=body + gs1_check_digit(body))
    if text.startswith(SGLN_PREFIX):
        m = _SGLN_RE.fullmatch(text)
        if (
            not m
            or not _prefix_ok(m[1], 12, m[2], _SHORTEST_PREFIX[3])
            or not re.fullmatch(_RAW_SERIAL, m[3])
        ):
            return _bad(
                text,
                "an SGLN needs a company prefix and a location reference of 12 digits "
                "together, then an extension",
            )
        body = m[1] + m[2]
        return Epc(text, "sgln", sgln=text[len(SGLN_PREFIX) :], gln=body + gs1_check_digit(body))
    if (dl := _DL_SSCC_RE.fullmatch(text)) is not None:
        sscc = dl[1]
        if not _digits_checked(sscc, 18):
            return _bad(text, "a Digital Link SSCC (/00/) needs 18 digits with a right check digit")
        return Epc(text, "sscc", sscc=sscc)
    if (dl := _DL_SGTIN_RE.fullmatch(text)) is not None:
        gtin, raw = dl[1], dl[2]
        if not _digits_checked(gtin, 14):
            return _bad(text, "a Digital Link GTIN (/01/) needs 14 digits with a right check digit")
        serial = unquote(raw) if re.fullmatch(_DL_RAW_SERIAL, raw) else ""
        if not re.fullmatch(_CS82 + "{1,20}", serial):
            return _bad(text, "the Digital Link serial must have 1 to 20 characters of GS1 set 82")
        return Epc(text, "sgtin", product_code=gtin, serial=serial)
    if re.fullmatch(_URI, text, re.S):
        return Epc(text, "other")
    return _bad(text, "not a URI")


def _digits_checked(code: str, length: int) -> bool:
    """`length` ASCII digits whose last is the GS1 check digit of the others."""
    return (
        len(code) == length
        and code.isdigit()
        and code.isascii()
        and gs1_check_digit(code[:-1]) == code[-1]
    )


def sgln_key(value: str | None) -> str | None:
    """The `prefix.location.extension` form of an SGLN given as URI or already bare; None if not valid."""
    if value is None:
        return None
    text = value.strip()
    if not text.startswith(SGLN_PREFIX):
        text = SGLN_PREFIX + text
    epc = parse_epc(text)
    return epc.sgln if epc.scheme == "sgln" else None


def valid_gln(value: str | None) -> bool:
    """A GLN-13: 13 digits whose last is the GS1 check digit of the first 12."""
    return _digits_checked((value or "").strip(), 13)


# ---------------------------------------------------------------- vectorised (DuckDB SQL)


def check_digit_sql(body: str, length: int) -> str:
    """SQL for the GS1 mod-10 check digit of `body`, a string of exactly `length` digits."""
    terms = []
    for i in range(length):
        weight = 3 if (length - 1 - i) % 2 == 0 else 1
        terms.append(f"{weight} * (ascii(substr({body}, {i + 1}, 1)) - 48)")
    return f"CAST((10 - ({' + '.join(terms)}) % 10) % 10 AS VARCHAR)"


def _sql_str(pattern: str) -> str:
    return "'" + pattern.replace("'", "''") + "'"


def parse_epcs_sql(relation: str, column: str = "epc") -> str:
    """A SELECT that adds the parsed columns to every row of `relation`.

    `relation` is a table name or a parenthesised query; `column` holds trimmed
    EPC text.  Added columns: `epc_scheme` (`sgtin`, `sscc`, `sgln`, `other`,
    `malformed`), `product_code` and `serial` (SGTIN), `sscc` (SSCC-18), `sgln`
    (`prefix.location.extension`).  Same rules as `parse_epc`.
    """
    e = f"_r.{column}"
    cs82 = _sql_str(_CS82 + "{1,20}")
    raw = _sql_str(_RAW_SERIAL)
    dl_sscc, dl_sgtin = _sql_str("(?s)" + _DL_SSCC), _sql_str("(?s)" + _DL_SGTIN)
    dl_sscc_x, dl_sgtin_x = _sql_str("(?s)^" + _DL_SSCC + "$"), _sql_str("(?s)^" + _DL_SGTIN + "$")
    dl_raw = _sql_str(_DL_RAW_SERIAL)
    # Millions of rows: per row only cheap string functions (`split_part`, no lists)
    # and one regex on the serial; the rules on `prefix.reference` and the check
    # digits run once per distinct head (a handful of GTINs / SSCC prefixes) and are
    # joined back.  `_two_dots`: `_rest` has two dots or more (`_cp`, `_ir` hold none).
    return f"""
    WITH _parts AS MATERIALIZED (
        SELECT *,
            split_part(_rest, '.', 1) AS _cp,
            split_part(_rest, '.', 2) AS _ir
        FROM (
            SELECT _r.*,
                CASE WHEN starts_with({e}, '{SGTIN_PREFIX}') THEN 1
                     WHEN starts_with({e}, '{SSCC_PREFIX}') THEN 2
                     WHEN starts_with({e}, '{SGLN_PREFIX}') THEN 3
                     WHEN regexp_full_match({e}, {_sql_str(_URI)}) THEN 4
                     ELSE 0 END AS _s,
                CASE WHEN starts_with({e}, '{SGTIN_PREFIX}') THEN substr({e}, {len(SGTIN_PREFIX) + 1})
                     WHEN starts_with({e}, '{SSCC_PREFIX}') OR starts_with({e}, '{SGLN_PREFIX}')
                     THEN substr({e}, {len(SSCC_PREFIX) + 1}) END AS _rest
            FROM {relation} _r
        )
    ),
    _heads AS (
        SELECT _s, _cp, _ir,
            CASE _s WHEN 1 THEN length(_cp) + length(_ir) = 13
                    WHEN 2 THEN length(_cp) + length(_ir) = 17
                    ELSE length(_cp) + length(_ir) = 12 END
            AND length(_cp) BETWEEN CASE _s WHEN 3 THEN 1 ELSE 6 END AND 12
            AND translate(_cp || _ir, '0123456789', '') = '' AS _head_ok,
            substr(_ir, 1, 1) || _cp || substr(_ir, 2) AS _body
        FROM (SELECT DISTINCT _s, _cp, _ir FROM _parts WHERE _s BETWEEN 1 AND 3)
    ),
    _keys AS (
        SELECT _s, _cp, _ir,
            CASE WHEN NOT _head_ok THEN NULL
                 WHEN _s = 1 THEN _body || {check_digit_sql("_body", 13)}
                 WHEN _s = 2 THEN _body || {check_digit_sql("_body", 17)} END AS _key,
            _head_ok
        FROM _heads
    ),
    _rows AS (
        SELECT _parts.*, _keys._key, _keys._head_ok,
            CASE WHEN _parts._s IN (1, 3) AND _keys._head_ok
                 THEN substr(_rest, length(_parts._cp) + length(_parts._ir) + 3) END AS _ext,
            strlen(_rest) > strlen(_parts._cp) + strlen(_parts._ir) + 1 AS _two_dots
        FROM _parts LEFT JOIN _keys
          ON _keys._s = _parts._s AND _keys._cp = _parts._cp AND _keys._ir = _parts._ir
    ),
    _ser AS (
        SELECT *,
            CASE WHEN _s <> 1 OR NOT _head_ok OR NOT _two_dots OR NOT regexp_full_match(_ext, {raw}) THEN NULL
                 WHEN NOT contains(_ext, '%') THEN _ext
                 WHEN regexp_full_match(url_decode(_ext), {cs82}) THEN url_decode(_ext)
            END AS _serial
        FROM _rows
    ),
    _dl AS (  -- Digital Link URIs (they parse as other URIs, _s = 4): SSCC or SGTIN parts
        SELECT *,
            CASE WHEN _s = 4 AND regexp_full_match({column}, {dl_sscc})
                 THEN regexp_extract({column}, {dl_sscc_x}, 1) END AS _dc,
            CASE WHEN _s = 4 AND regexp_full_match({column}, {dl_sgtin})
                 THEN regexp_extract({column}, {dl_sgtin_x}, 1) END AS _dg,
            CASE WHEN _s = 4 AND regexp_full_match({column}, {dl_sgtin})
                 THEN regexp_extract({column}, {dl_sgtin_x}, 2) END AS _dr
        FROM _ser
    ),
    _dl_ok AS (
        SELECT *,
            _dc IS NOT NULL AND regexp_full_match(_dc, '[0-9]{{18}}')
                AND {check_digit_sql("_dc", 17)} = substr(_dc, 18, 1) AS _dc_ok,
            CASE WHEN _dg IS NULL OR NOT regexp_full_match(_dg, '[0-9]{{14}}')
                      OR {check_digit_sql("_dg", 13)} <> substr(_dg, 14, 1)
                      OR NOT regexp_full_match(_dr, {dl_raw}) THEN NULL
                 WHEN NOT contains(_dr, '%') THEN _dr
                 ELSE url_decode(_dr)
            END AS _ds
        FROM _dl
    )
    SELECT * EXCLUDE (_s, _rest, _cp, _ir, _key, _head_ok, _ext, _two_dots, _serial, _ok,
                      _dc, _dg, _dr, _dc_ok, _ds, _ds_ok),
        CASE WHEN _dc IS NOT NULL THEN CASE WHEN _dc_ok THEN 'sscc' ELSE 'malformed' END
             WHEN _dg IS NOT NULL THEN CASE WHEN _ds_ok THEN 'sgtin' ELSE 'malformed' END
             WHEN _ok THEN ['malformed', 'sgtin', 'sscc', 'sgln', 'other'][_s + 1]
             ELSE 'malformed' END AS epc_scheme,
        CASE WHEN _ok AND _s = 1 THEN _key WHEN _ds_ok THEN _dg END AS product_code,
        CASE WHEN _ok AND _s = 1 THEN _serial WHEN _ds_ok THEN _ds END AS serial,
        CASE WHEN _ok AND _s = 2 THEN _key WHEN _dc_ok THEN _dc END AS sscc,
        CASE WHEN _ok AND _s = 3 THEN _rest END AS sgln
    FROM (
        SELECT *,
            CASE _s
                WHEN 1 THEN length(_serial) BETWEEN 1 AND 20
                WHEN 2 THEN _head_ok AND contains(_rest, '.') AND NOT _two_dots
                WHEN 3 THEN _head_ok AND _two_dots AND regexp_full_match(_ext, {raw})
                ELSE _s = 4
            END IS TRUE AS _ok,
            _ds IS NOT NULL AND regexp_full_match(_ds, {cs82}) AS _ds_ok
        FROM _dl_ok
    )
    """


def epc_key_sql(
    scheme: str = "epc_scheme",
    epc: str = "epc",
    product_code: str = "product_code",
    serial: str = "serial",
    sscc: str = "sscc",
) -> str:
    """SQL for the identity key of a parsed EPC: a 128-bit number (`UHUGEINT`).

    An SGTIN is keyed by its GTIN-14 and decoded serial, an SSCC by its SSCC-18, so
    that two ways of writing one identifier (another company-prefix length, a
    `%xx` escape) are one object; any other identifier by its trimmed text.  The
    three forms cannot meet (`GTIN serial` has a space, an SSCC-18 is 18 digits, a
    URI has a colon).  The key is the MD5 of that form: joins of the packaging
    hierarchy and of the reconciliation run on fixed-width numbers instead of
    50-character URIs; two different identifiers of at most a few dozen characters
    with one MD5 are not a practical concern.  Keys are kept in the state store
    (`shipping_aggregation`), so this form must not change.
    """
    return (
        f"md5_number(CASE {scheme} WHEN 'sgtin' THEN {product_code} || ' ' || {serial} "
        f"WHEN 'sscc' THEN {sscc} ELSE {epc} END)"
    )


# ---------------------------------------------------------------- vectorised (Polars)

_SCHEMES = ["malformed", "sgtin", "sscc", "sgln", "other"]
_DIGITS = {1: 13, 2: 17, 3: 12}  # digits of prefix + reference, by scheme number


def _head_keys(heads: pl.DataFrame) -> pl.DataFrame:
    """(_s, _cp, _ir) -> _head_ok and the GTIN-14 / SSCC-18 key: a handful of distinct heads."""
    ok, keys = [], []
    for scheme, cp, ir in heads.iter_rows():
        good = (
            _SHORTEST_PREFIX[scheme] <= len(cp) <= 12
            and len(cp) + len(ir) == _DIGITS[scheme]
            and (cp + ir).isdigit()
            and (cp + ir).isascii()
        )
        body = ir[:1] + cp + ir[1:]
        ok.append(good)
        keys.append(body + gs1_check_digit(body) if good and scheme in (1, 2) else None)
    return heads.with_columns(
        pl.Series("_head_ok", ok, pl.Boolean), pl.Series("_key", keys, pl.String)
    )


def parse_epcs_frame(frame: pl.DataFrame, column: str = "epc") -> pl.DataFrame:
    """`frame` with the parsed columns of `parse_epcs_sql` added (same rules, same columns).

    `column` holds trimmed EPC text.  Per row only vectorised string functions and
    one regex on the serial; the rules on `prefix.reference` and the check digits
    run once per distinct head; only serials with a `%` escape are decoded one by one.
    """
    e = pl.col(column)
    urn = (
        pl.when(e.str.starts_with(SGTIN_PREFIX))
        .then(1)
        .when(e.str.starts_with(SSCC_PREFIX))
        .then(2)
        .when(e.str.starts_with(SGLN_PREFIX))
        .then(3)
    )
    # the URI regex only where some text is no EPC URN (a document of URNs skips it)
    others = frame.select((~urn.is_not_null()).any()).item()
    scheme = (
        urn.when(e.str.contains("^" + _URI + "$")).then(4).otherwise(0) if others else urn
    ).cast(pl.Int8)
    rest = (
        pl.when(pl.col("_s") == 1)
        .then(e.str.slice(len(SGTIN_PREFIX)))
        .when(pl.col("_s").is_in([2, 3]))
        .then(e.str.slice(len(SSCC_PREFIX)))
    )
    parts = pl.col("_rest").str.splitn(".", 3)
    work = (
        frame.with_columns(scheme.alias("_s"))
        .with_columns(rest.alias("_rest"))
        .with_columns(
            parts.struct.field("field_0").fill_null("").alias("_cp"),
            parts.struct.field("field_1").fill_null("").alias("_ir"),
            parts.struct.field("field_2").alias("_tail"),  # after the second dot, if any
        )
    )
    heads = (
        work.filter(pl.col("_s").is_between(1, 3))
        .select("_s", "_cp", "_ir")
        .unique(maintain_order=True)
    )
    work = work.join(_head_keys(heads), on=["_s", "_cp", "_ir"], how="left", maintain_order="left")
    raw_ok = pl.col("_tail").str.contains("^" + _RAW_SERIAL + "$")
    escaped = pl.col("_tail").str.contains("%", literal=True)
    work = work.with_columns(
        pl.when((pl.col("_s") == 1) & pl.col("_head_ok") & raw_ok)
        .then(pl.col("_tail"))
        .alias("_raw")
    )
    decoded = work.select(
        pl.when(escaped & pl.col("_raw").is_not_null()).then(pl.col("_raw"))
    ).to_series()
    serial: pl.Expr = pl.col("_raw")
    if decoded.null_count() < decoded.len():  # a few serials with %xx escapes
        decoded = decoded.map_elements(unquote, return_dtype=pl.String, skip_nulls=True)
        serial = (
            pl.when(~escaped)
            .then(pl.col("_raw"))
            .when(pl.lit(decoded).str.contains("^" + _CS82 + "{1,20}$"))
            .then(pl.lit(decoded))
        )
    work = work.with_columns(serial.alias("_serial"))
    ok = (
        pl.when(pl.col("_s") == 1)
        .then(pl.col("_serial").str.len_chars().is_between(1, 20))
        .when(pl.col("_s") == 2)
        .then(
            pl.col("_head_ok")
            & pl.col("_rest").str.contains(".", literal=True)
            & pl.col("_tail").is_null()
        )
        .when(pl.col("_s") == 3)
        .then(pl.col("_head_ok") & raw_ok)
        .otherwise(pl.col("_s") == 4)
        .fill_null(False)
    )
    s_ = pl.col("_s")
    parsed = work.with_columns(ok.alias("_ok")).select(
        *frame.columns,
        pl.when(pl.col("_ok"))
        .then(s_.replace_strict(list(range(5)), _SCHEMES, return_dtype=pl.String))
        .otherwise(pl.lit("malformed"))
        .alias("epc_scheme"),
        pl.when(pl.col("_ok") & (s_ == 1)).then(pl.col("_key")).alias("product_code"),
        pl.when(pl.col("_ok") & (s_ == 1)).then(pl.col("_serial")).alias("serial"),
        pl.when(pl.col("_ok") & (s_ == 2)).then(pl.col("_key")).alias("sscc"),
        pl.when(pl.col("_ok") & (s_ == 3)).then(pl.col("_rest")).alias("sgln"),
    )
    if others and parsed.select(e.str.contains("^" + _DL_START).any()).item():
        parsed = _digital_links_frame(parsed, column)
    return parsed


def _digital_links_frame(parsed: pl.DataFrame, column: str) -> pl.DataFrame:
    """`parsed` with its GS1 Digital Link URIs parsed (they parsed as *other* URIs):
    SGTIN or SSCC, or malformed (same rules as `parse_epc`)."""
    e = pl.col(column)
    gtin = e.str.extract("(?s)^" + _DL_SGTIN + "$", 1)
    raw = e.str.extract("(?s)^" + _DL_SGTIN + "$", 2)
    sscc = e.str.extract("(?s)^" + _DL_SSCC + "$", 1)
    work = parsed.with_columns(gtin.alias("_g"), raw.alias("_r"), sscc.alias("_c"))
    g, r, c = pl.col("_g"), pl.col("_r"), pl.col("_c")
    escaped = r.str.contains("%", literal=True)
    raw_ok = r.str.contains("^" + _DL_RAW_SERIAL + "$")
    decoded = work.select(pl.when(raw_ok & escaped).then(r)).to_series()
    if decoded.null_count() < decoded.len():
        decoded = decoded.map_elements(unquote, return_dtype=pl.String, skip_nulls=True)
    serial = pl.when(raw_ok & ~escaped).then(r).otherwise(pl.lit(decoded))
    serial = pl.when(serial.str.contains("^" + _CS82 + "{1,20}$")).then(serial)
    gtin_ok = g.str.contains("^[0-9]{14}$") & (
        gs1_check_digit_expr(g.str.slice(0, 13), 13) == g.str.slice(13, 1)
    )
    sscc_ok = c.str.contains("^[0-9]{18}$") & (
        gs1_check_digit_expr(c.str.slice(0, 17), 17) == c.str.slice(17, 1)
    )
    sgtin_ok = (gtin_ok & serial.is_not_null()).fill_null(False)
    sscc_ok = sscc_ok.fill_null(False)
    is_sscc, is_sgtin = c.is_not_null(), g.is_not_null()
    return work.with_columns(
        pl.when(is_sscc)
        .then(pl.when(sscc_ok).then(pl.lit("sscc")).otherwise(pl.lit("malformed")))
        .when(is_sgtin)
        .then(pl.when(sgtin_ok).then(pl.lit("sgtin")).otherwise(pl.lit("malformed")))
        .otherwise(pl.col("epc_scheme"))
        .alias("epc_scheme"),
        pl.when(is_sgtin & sgtin_ok)
        .then(g)
        .otherwise(pl.col("product_code"))
        .alias("product_code"),
        pl.when(is_sgtin & sgtin_ok).then(serial).otherwise(pl.col("serial")).alias("serial"),
        pl.when(is_sscc & sscc_ok).then(c).otherwise(pl.col("sscc")).alias("sscc"),
    ).drop("_g", "_r", "_c")
