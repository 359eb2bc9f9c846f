"""A real OpenSSH server for the delivery tests (SPEC §8.1): Debian's `sshd` started as
`sshd -D -f <config in a temporary folder>` on a free loopback port, with its own host key,
a user key allowed to log in, the SFTP subsystem logging every operation (`-l INFO`) and an
SFTP root in a temporary folder; stopped by PID.

`SshServer` is plain (the delivery benchmark starts one too); `sshd_server` is the
session-scoped fixture.  The tests run as root, so the user is `root` and the root's
home is never touched: the authorized keys and the host key live in the temporary folder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.common import free_port, stop_process, tail, wait_for_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


class SshServer:
    """One sshd in `home`: `start()`, `stop()`, `start()` again on the same port and keys."""

    def __init__(self, home: Path, port: int | None = None, *, log_sftp: bool = True) -> None:
        self.home = home
        self.port = port or free_port()
        self.user = "root"
        self.root = home / "sftp"  # where uploads land (the URL's path points inside it)
        self.host_key = home / "ssh_host_ed25519_key"
        self.user_key = home / "user_ed25519"
        self.other_key = home / "other_ed25519"  # a key the server does not accept
        self.known_hosts = home / "known_hosts"
        self.log = home / "sshd.log"
        self.sftp_log = home / "sftp.log"  # every SFTP operation (open, rename, …)
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        for key, comment in ((self.host_key, "cmi-test-host"), (self.user_key, "cmi-test-user"),
                             (self.other_key, "cmi-test-other")):  # fmt: skip
            if not key.exists():
                _keygen(key, comment)
        (home / "authorized_keys").write_text(self.user_key.with_suffix(".pub").read_text())
        self.known_hosts.write_text(self.known_hosts_line())
        (home / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {home / 'sshd.pid'}",
                    f"AuthorizedKeysFile {home / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "LogLevel INFO",
                    "MaxStartups 100:30:200",
                    "MaxSessions 50",
                    # with log_sftp, the SFTP server's log of every operation goes to a file
                    # (sftp-server run by the user's shell, which may take a while to start:
                    # root's ~/.bashrc); without, sshd's own internal-sftp, as production
                    # servers usually run it (its log lines go nowhere here)
                    f"Subsystem sftp {SFTP_SERVER} -e -l INFO 2>>{self.sftp_log}"
                    if log_sftp
                    else "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    def known_hosts_line(self, key: Path | None = None) -> str:
        """The known_hosts line of this server (or of another host key at its address)."""
        pub = (key or self.host_key).with_suffix(".pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n"

    def url(self, folder: str) -> str:
        """An sftp:// URL to `folder` (created) under the SFTP root."""
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        return f"sftp://{self.user}@127.0.0.1:{self.port}{self.root / folder}"

    def start(self) -> None:
        # privilege separation needs its empty folder (the Debian package makes it at boot)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.home / "sshd_config"), "-E", str(self.log)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port, 60, self.proc)
        except Exception as err:
            raise RuntimeError(f"sshd did not start: {err}\n{tail(self.log)}") from err

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def uploads(self) -> dict[str, int]:
        """How many times each final name was made on the server: every upload ends with a
        rename from its `.part` name, which internal-sftp logs at `-l INFO`."""
        made: dict[str, int] = {}
        for line in self._sftp_lines():
            m = re.search(r'rename old "([^"]*)" new "([^"]*)"', line)
            if m:
                name = m.group(2)
                made[name] = made.get(name, 0) + 1
        return made

    def renamed_to(self) -> list[str]:
        """The final names made on the server, in the order the server made them."""
        found = []
        for line in self._sftp_lines():
            m = re.search(r'rename old "([^"]*)" new "([^"]*)"', line)
            if m:
                found.append(m.group(2))
        return found

    def opened_for_writing(self) -> list[str]:
        """Every path the SFTP server opened for writing (internal-sftp's `open` lines)."""
        found = []
        for line in self._sftp_lines():
            m = re.search(r'open "([^"]*)" flags (\S+)', line)
            if m and "WRITE" in m.group(2):
                found.append(m.group(1))
        return found

    def _sftp_lines(self) -> list[str]:
        try:
            return self.sftp_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def log_tail(self) -> str:
        return f"{tail(self.log)}\n--- sftp-server ---\n{tail(self.sftp_log)}"


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshServer]:
    """One OpenSSH server for the whole session; a test that stops it starts it again."""
    home = Path(tempfile.mkdtemp(prefix="cmi-sshd-"))
    server = SshServer(home)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test that used the server gets the server's log tail in its output."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get("sshd_server")
    if rep.failed and isinstance(server, SshServer):
        rep.sections.append(("sshd log (tail)", server.log_tail()))
