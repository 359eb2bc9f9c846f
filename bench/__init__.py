"""Benchmarks (`make bench`): each runs the product as its entry points do."""

import connectors  # noqa: F401 - the process set-up, before polars loads
