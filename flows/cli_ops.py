"""`cmi serve` (SPEC §1, §11): the nightly flow on a schedule with Prefect."""

from __future__ import annotations

from typing import Annotated

import typer

from connectors.config import ConfigError, load_config
from flows.cli_common import (
    ConfigOpt,
    InboxOpt,
    OutboxOpt,
    StateOpt,
    app,
    config_path,
    guarded,
    path_of,
)
from flows.pipeline import RunPaths


@app.command()
def serve(
    cron: Annotated[str, typer.Option("--cron", help="schedule (cron expression)")] = "0 2 * * *",
    inbox: InboxOpt = None, outbox: OutboxOpt = None, state: StateOpt = None, config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Serve the nightly flow on a schedule with Prefect (needs a Prefect server: PREFECT_API_URL)."""
    from flows.nightly import scheduled_nightly

    paths = RunPaths(path_of(inbox, "CMI_INBOX", "inbox"), path_of(outbox, "CMI_OUTBOX", "outbox"),
                     path_of(state, "CMI_STATE", "state/cmi.duckdb"))  # fmt: skip
    config_file, explicit = config_path(config)

    def action() -> None:
        from prefect.schedules import Cron

        try:
            schedule = Cron(cron)
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"--cron '{cron}' is not a valid cron expression ({err})") from err
        load_config(config_file, explicit=explicit)  # fail fast on a bad configuration
        typer.echo(f"serving the nightly flow on '{cron}' (Ctrl-C to stop)")
        scheduled_nightly.serve(
            name="cmi-nightly",
            schedule=schedule,
            parameters={
                "inbox": str(paths.inbox.resolve()),
                "outbox": str(paths.outbox.resolve()),
                "state": str(paths.state.resolve()),
                "config": str(config_file.resolve())
                if (explicit or config_file.exists())
                else None,
            },
        )

    raise typer.Exit(guarded(paths.state, action))
