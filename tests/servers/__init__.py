"""Real servers for tests (SPEC §11, STYLE "Servers in tests"): one module per server, each a
session-scoped fixture that starts it on a free loopback port in a temporary folder and stops
it by PID.  `conftest.py` registers the modules as pytest plugins."""
