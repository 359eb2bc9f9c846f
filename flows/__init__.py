"""The nightly flow and the `cmi` command."""

import connectors  # noqa: F401 - the process set-up, before polars loads
