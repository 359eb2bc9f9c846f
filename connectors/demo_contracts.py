"""A realistic Contract Managed Inventory day for `cmi demo` (SPEC §1, §7).

`demo_contract_day` returns {file name: CSV text}: contract keys, the seven
contract types (a logistic SCS among them), their lines, receptions, and a few
hundred sales order lines in two order files (pooled by the run), with some rows
deliberately wrong so that `rejects.csv` and the allocation reasons have
something to show.  Deterministic: the same day and products give the same files.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence


def _csv(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


def demo_contract_day(as_of: dt.date, product_codes: Sequence[str]) -> dict[str, str]:
    """The contract files of a demo day, using existing product codes (at least two)."""
    codes = list(product_codes)
    if len(codes) < 2:
        raise ValueError("demo_contract_day needs at least two product codes")
    p = [codes[i % len(codes)] for i in range(5)]
    d = as_of.isoformat()

    def day(offset: int) -> str:
        return (as_of + dt.timedelta(days=offset)).isoformat()

    files: dict[str, str] = {}
    files["contract_keys_demo.csv"] = _csv(
        "contract_key,customer",
        ["HOSP-GROUP,HOSP-NORTH", "HOSP-GROUP,HOSP-SOUTH", "HOSP-GROUP,HOSP-EAST"],
    )
    head = (
        "contract_id,description,contract_type,logistic,customer,contract_key,supplier,currency,"
        "handler,responsible,cost_centre,warehouse,off_contract_sales,start_date,end_date,active"
    )
    files["contracts_demo.csv"] = _csv(
        head,
        [
            f"CDS-PHX-01,Deposit stock Pharmacy Phoenix,CDS,,PHARM-PHX,,,EUR,ANNA,BORIS,CC10,CDSW,N,{day(-90)},{day(275)},Y",
            "SCS-SUP-01,Consignment stock Supplier Alpha,SCS,N,,HOSP-GROUP,SUP-ALPHA,EUR,ANNA,BORIS,CC20,SCSW,Y,,,Y",
            "SCS-LOG-01,Logistic consignment Supplier Beta,SCS,Y,,,SUP-BETA,EUR,ANNA,BORIS,CC20,LOGW,N,,,Y",
            f"WCS-CLN-01,Consignment at Clinic Central,WCS,,CLINIC-CENTRAL,,,EUR,CARL,BORIS,CC30,WCSW,N,,{day(60)},Y",
            "WDS-SUP-01,Deposit at Supplier Gamma,WDS,,,,SUP-GAMMA,EUR,CARL,DORA,CC40,WDSW,N,,,Y",
            f"CBS-HOS-01,Buffer stock Hospital North,CBS,,HOSP-NORTH,,,EUR,ANNA,DORA,,CBSW,N,{day(-30)},,Y",
            "WBS-SUP-01,Buffer at Supplier Alpha,WBS,,,,SUP-ALPHA,EUR,CARL,DORA,,WBSW,N,,,Y",
            "DIS-CLN-01,Deferred indent Clinic Central,DIS,,CLINIC-CENTRAL,,SUP-DELTA,EUR,ANNA,BORIS,,DISW,Y,,,Y",
            "WBS-NEW-01,Buffer not yet activated,WBS,,,,SUP-ALPHA,EUR,CARL,DORA,,WBSW,N,,,N",
            # deliberately wrong rows
            "CDS-BAD-01,Deposit without customer,CDS,,,,,EUR,ANNA,BORIS,,CDSW,N,,,Y",
            "SCS-BAD-01,Logistic with off-contract sales,SCS,Y,,,SUP-BETA,EUR,ANNA,BORIS,,LOGW,Y,,,Y",
            f"WBS-BAD-01,Ends before it starts,WBS,,,,SUP-ALPHA,EUR,ANNA,BORIS,,WBSW,N,{d},{day(-1)},Y",
        ],
    )
    lines_head = (
        "contract_id,line_no,item,contract_quantity,contract_unit,unit_factor,cost_price,"
        "sales_price,start_date,end_date,auto_assign,warehouse"
    )
    files["contract_lines_demo.csv"] = _csv(
        lines_head,
        [
            f"CDS-PHX-01,1,{p[1]},400,,,,4.20,,,,",
            f"CDS-PHX-01,2,{p[2]},,,,,2.10,,{day(30)},,",
            f"SCS-SUP-01,1,{p[1]},60,BOX,10,2.80,,,,,",
            f"SCS-SUP-01,2,{p[3]},200,,,35.00,,,{day(14)},N,",
            f"SCS-LOG-01,1,{p[2]},,,,1.10,,,,,",
            f"WCS-CLN-01,1,{p[1]},150,,,,4.00,,{day(20)},,",
            f"WCS-CLN-01,2,{p[1]},300,,,,4.00,,,,",
            f"WDS-SUP-01,1,{p[4]},500,,,,,,,,",
            f"CBS-HOS-01,1,{p[3]},20,PK,5,,,,,,",
            f"CBS-HOS-01,2,{p[4]},80,,,,,,,,",
            f"WBS-SUP-01,1,{p[2]},250,,,,,,,,",
            f"WBS-SUP-01,2,{p[2]},100,,,,,,{day(7)},,",
            f"DIS-CLN-01,1,{p[3]},40,,,12.50,,,,,",
            f"WBS-NEW-01,1,{p[4]},50,,,,,,,,",
            # deliberately wrong rows
            f"CBS-HOS-01,3,{p[1]},,,,,,,,,",  # CBS needs a contract quantity
            f"DIS-CLN-01,2,{p[2]},10,,,,,,,,",  # DIS needs a cost price
            "WDS-SUP-01,2,1.23457E+13,10,,,,,,,,",  # a product code mangled by a spreadsheet
            f"NO-SUCH-01,1,{p[1]},10,,,,,,,,",  # unknown contract
        ],
    )
    rc_head = "contract_id,line_no,quantity,receipt_date,process,supply_order,batch,ncc_quantity"
    files["receipts_demo.csv"] = _csv(
        rc_head,
        [
            f"CDS-PHX-01,1,400,{day(-20)},supply_deposit,SO-DEP-1001,B2401,8",
            f"CDS-PHX-01,2,120,{day(-15)},supply_deposit,SO-DEP-1002,B2402,",
            f"SCS-SUP-01,1,60,{day(-12)},supply,PO-7001,B2403,",
            f"SCS-SUP-01,2,200,{day(-10)},supply,PO-7002,B2404,",
            f"SCS-LOG-01,1,180,{day(-9)},supply,PO-7003,B2405,12",
            f"WCS-CLN-01,1,150,{day(-8)},external_supply,PO-7004,B2406,",
            f"WCS-CLN-01,2,300,{day(-5)},internal_supply,IRO-3001,B2407,",
            f"WDS-SUP-01,1,500,{day(-4)},supply,PO-7005,B2408,",
            # deliberately wrong rows
            f"CDS-PHX-01,1,10,{day(-3)},supply_deposit,SO-DEP-1003,B2409,",  # second reception without CMI-MULT
            f"WDS-SUP-01,1,20,{day(-3)},supply_deposit,PO-7006,,",  # wrong process for WDS
            f"CBS-HOS-01,1,5,{day(-3)},supply,PO-7007,,",  # CBS is initialized at activation
            f"WCS-CLN-01,2,10,{day(-2)},external_supply,PO-7008,,20",  # NCC above quantity
        ],
    )
    rng = random.Random(f"cmi-demo-{d}")
    customers = [
        "PHARM-PHX", "HOSP-NORTH", "HOSP-SOUTH", "HOSP-EAST", "CLINIC-CENTRAL", "PHARM-RIVER",
    ]  # fmt: skip
    order_head = (
        "order_no,order_line,order_date,customer,item,quantity,warehouse,contract_id,line_no"
    )
    batches: list[list[str]] = [[], []]
    for n in range(1, 121):
        order_no = f"SO-{as_of:%y%m%d}-{n:04d}"
        for line in range(1, rng.randint(2, 3) + 1):
            customer = rng.choice(customers)
            item = rng.choice(p[1:])
            quantity = rng.choice([1, 2, 5, 5, 10, 10, 20, 25, 50])
            ref = ""
            chosen = ""
            warehouse = ""
            roll = rng.random()
            if roll < 0.06:
                ref = "DIS-CLN-01"
                customer = "CLINIC-CENTRAL"
            elif roll < 0.10:
                ref, chosen = "SCS-SUP-01", "2"
            elif roll < 0.14:
                warehouse = rng.choice(["WCSW", "CBSW", "MAINW"])
            order_date = day(-rng.randint(0, 2))
            batches[n % 2].append(
                f"{order_no},{line},{order_date},{customer},{item},{quantity},{warehouse},{ref},{chosen}"
            )
    # deliberately wrong rows
    batches[0].append(f"SO-{as_of:%y%m%d}-0001,1,{d},PHARM-PHX,{p[1]},5,,,")  # repeated order line
    batches[0].append(
        f"SO-{as_of:%y%m%d}-9001,1,{d},PHARM-PHX,{p[1]},5,,,2"
    )  # line_no without contract
    batches[1].append(
        f"SO-{as_of:%y%m%d}-9002,1,{d},HOSP-NORTH,{p[2]},5,,CBS-HOS-01,"
    )  # off-contract not allowed
    batches[1].append(f"SO-{as_of:%y%m%d}-9003,1,{d},HOSP-NORTH,{p[3]},0,,,")  # quantity 0
    files["orders_demo_morning.csv"] = _csv(order_head, batches[0])
    files["orders_demo_evening.csv"] = _csv(order_head, batches[1])
    return files
