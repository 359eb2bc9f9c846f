"""Notifications through Apprise (SPEC §2 `[notify]`, §11): one message to each URL.

A URL is shown only in Apprise's private form (`url(privacy=True)`: passwords and tokens
masked), so a warning about a target never carries its secret.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence


def unknown_urls(urls: Sequence[str]) -> list[str]:
    """The URLs Apprise cannot send to (an unknown scheme or a malformed URL)."""
    if not urls:
        return []
    import apprise

    return [u for u in urls if apprise.Apprise.instantiate(u) is None]


def shown(url: str) -> str:
    """The URL as it may appear in a warning or a log: secrets masked."""
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return url.split("://", 1)[0] + "://…"
    return str(plugin.url(privacy=True)).split("?", 1)[0]


def send(urls: Sequence[str], title: str, body: str) -> list[str]:
    """Send one message to each URL; return one warning per URL it could not reach."""
    import apprise

    warnings = []
    for url in urls:
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            warnings.append(f"notification to {shown(url)} not sent: Apprise does not know it")
            continue
        sender = apprise.Apprise()
        sender.add(plugin)
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            try:
                ok = sender.notify(title=title, body=body)
            except Exception as err:  # noqa: BLE001 - a notification never fails the run
                ok, captured = False, None
                reason = f"{type(err).__name__}: {err}"
            else:
                reason = ""
        if not ok:
            if captured is not None:
                lines = [ln.strip() for ln in captured.getvalue().splitlines() if ln.strip()]
                reason = lines[-1] if lines else "no answer"
            warnings.append(f"notification to {shown(url)} could not be sent ({reason})")
    return warnings
