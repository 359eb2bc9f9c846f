"""I/O: inbox, CSV reading, EPCIS reading, the state store, the outbox; and the
process set-up they need, done here, before any module of ours imports polars.

Polars' allocator (jemalloc) keeps the pages it frees resident for a long time
(by default its "muzzy" pages are never returned).  A run stages a large
shipping document in Polars batches and then works in DuckDB: both would hold
memory at once.  Freed pages go back to the system within a second instead.
jemalloc reads this once, when polars loads; an explicit setting is kept.
"""

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:1000,muzzy_decay_ms:0")
