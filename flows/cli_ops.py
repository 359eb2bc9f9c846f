"""`cmi serve` and `cmi deploy` (SPEC §1, §11): the nightly flow on a schedule with Prefect.

Both need a Prefect server that answers (PREFECT_API_URL): without one they exit 2 and
say how to start one.  The Prefect side lives in `flows.prefect_deploy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from connectors.config import load_config
from flows.cli_common import (
    ConfigOpt,
    InboxOpt,
    OutboxOpt,
    StateOpt,
    app,
    check_run_paths,
    config_path,
    guarded,
    path_of,
)
from flows.pipeline import RunPaths

CronOpt = Annotated[
    str, typer.Option("--cron", metavar="EXPR", help="when the nightly run starts (cron: minute hour day month weekday)")
]  # fmt: skip
TimezoneOpt = Annotated[
    str | None,
    typer.Option(
        "--timezone", metavar="TZ", help="IANA time zone of the cron  [default: the machine's]"
    ),
]


@app.command()
def serve(
    cron: CronOpt = "0 2 * * *", timezone: TimezoneOpt = None,
    inbox: InboxOpt = None, outbox: OutboxOpt = None, state: StateOpt = None, config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Serve the nightly flow on a schedule with Prefect (needs a Prefect server: PREFECT_API_URL)."""
    paths = RunPaths(path_of(inbox, "CMI_INBOX", "inbox"), path_of(outbox, "CMI_OUTBOX", "outbox"),
                     path_of(state, "CMI_STATE", "state/cmi.duckdb"))  # fmt: skip
    config_file, explicit = config_path(config)

    def action() -> None:
        from flows.tenants import check_cron, check_timezone, local_timezone

        check_cron(cron, "--cron")
        zone = check_timezone(timezone, "--timezone") if timezone else local_timezone()
        load_config(config_file, explicit=explicit)  # fail fast on a bad configuration
        check_run_paths(paths.inbox, paths.outbox, paths.state)  # and on the wrong folder
        from flows.prefect_deploy import require_server, serve_nightly

        url = require_server()
        parameters = {
            "inbox": str(paths.inbox.resolve()),
            "outbox": str(paths.outbox.resolve()),
            "state": str(paths.state.resolve()),
            "config": str(config_file.resolve()) if (explicit or config_file.exists()) else None,
            "timezone": zone,  # the run's clock reads the cron's zone, as a tenant's does
        }
        typer.echo(f"serving nightly/cmi on '{cron}' in {zone} from {url} (Ctrl-C to stop)")
        serve_nightly(parameters, cron, zone, name="cmi")

    raise typer.Exit(guarded(paths.state, action))


@app.command()
def deploy(
    tenants: Annotated[Path, typer.Option("--tenants", metavar="FILE", help="the tenants file (TOML, SPEC §11)")],
    pool: Annotated[str, typer.Option("--pool", metavar="NAME", help="Prefect process work pool (created when missing)")] = "cmi",
) -> None:  # fmt: skip
    """Register one scheduled deployment nightly/<tenant> per tenant in a Prefect work pool,
    for `prefect worker start --pool NAME` to run (needs a Prefect server: PREFECT_API_URL)."""

    def action() -> None:
        from flows.tenants import load_tenants

        listed = load_tenants(tenants)
        from flows.prefect_deploy import deploy_tenants, require_server

        url = require_server()
        typer.echo(f"deploying {len(listed)} tenant(s) to {url}")
        deploy_tenants(listed, pool, typer.echo)
        typer.echo(f"start workers with: prefect worker start --pool {pool}")

    raise typer.Exit(guarded(tenants.resolve(), action))  # its log: cmi.log beside the file
