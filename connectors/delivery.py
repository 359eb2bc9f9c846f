"""Delivery of export files and partner answers to the CMOs' servers and folders (SPEC §8.1).

SFTP goes through asyncssh (a well-kept SSH library: asyncio timeouts on every step, host
keys checked against a known_hosts file, no SSH code of ours); a `file://` URL is a folder,
e.g. a mounted share.  Either way a file is uploaded under `.<name>.part`, then renamed to
its final name by a rename that never replaces a file already there — so no partial file
ever appears under a final name, and nothing is overwritten.  A final name already present
with the same size and SHA-256 is the file itself (a run stopped between the rename and
its mark): `already_there`; with other content it is a conflict, reported, left alone.

What was delivered is not decided here: `deliver` reports each file's outcome as it ends,
and the flow marks the state (`transforms/delivery.py`).  Secrets: a password is read from
its environment variable at connect time and goes nowhere else; no message holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import io
import os
import posixpath
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import unquote, urlsplit

import asyncssh

from transforms.context import DeliveryTarget
from transforms.delivery import ALREADY_THERE, DELIVERED, FAILED, Outcome

TIMEOUT_S = 60.0  # a step with no answer for this long fails the delivery (§8.1)
CHUNK = 4 << 20  # bytes read, hashed and written at a time (asyncssh pipelines its requests)
PARALLEL_FILES = 4  # files of one target being sent side by side
PARALLEL_CLOSES = 16  # files of one target being synced on the server and renamed meanwhile


@dataclass(frozen=True)
class Job:
    """One file to deliver: its final name, and where its bytes are (the outbox file, or —
    when that left the outbox — the bytes made again from the state)."""

    file_id: int
    name: str
    path: Path
    content: bytes | None = None

    def open(self) -> BinaryIO:
        return io.BytesIO(self.content) if self.content is not None else self.path.open("rb")

    def size(self) -> int:
        return len(self.content) if self.content is not None else self.path.stat().st_size


def safe_url(url: str) -> str:
    """The URL as reports show it: never a password (the configuration refuses one, but a
    report must not depend on that)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _sha256_stream(read: Callable[[int], bytes]) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    while chunk := read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _local_digest(job: Job) -> tuple[int, str]:
    try:
        with job.open() as fh:
            return _sha256_stream(fh.read)
    except OSError as err:
        raise _unreadable(job, err) from err


def _conflict(where: str, theirs: int, ours: int) -> str:
    return (
        f"a different file is already at {where} ({theirs} bytes; ours has {ours}): "
        "nothing was overwritten; move that file away (or ask the CMO what it is) and the next "
        "run delivers this one"
    )


# --------------------------------------------------------------------------- SFTP


class _Broken(Exception):
    """The connection is gone: every file still to do fails with the same reason."""


class _Unreadable(Exception):
    """Our own copy of a file cannot be read (e.g. a transfer tool took it from the outbox
    during the run): that file fails, the others go on; the next run delivers it from the
    state."""


def _unreadable(job: Job, err: OSError) -> _Unreadable:
    return _Unreadable(
        f"cannot read {job.path}: {err.strerror or err}; the next run delivers it again"
    )


def _sftp_reason(err: BaseException, target: DeliveryTarget, where: str) -> str:
    """What went wrong, for a person, without a secret."""
    if isinstance(err, asyncio.TimeoutError | TimeoutError):
        return f"no answer from {where} within {TIMEOUT_S:.0f} s; the next run tries again"
    if isinstance(err, asyncssh.HostKeyNotVerifiable):
        return _host_key_reason(target, where)
    if isinstance(err, asyncssh.PermissionDenied):
        how = (
            f"key file {target.key_file}"
            if target.key_file
            else f"the password in ${target.password_env}"
        )
        return f"{where} refused the login of its user with {how}: check the key or password with the CMO"
    if isinstance(err, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused (is the server down?)"
    if isinstance(err, asyncssh.DisconnectError):
        return f"{where} closed the connection: {err.reason}"
    if isinstance(err, asyncssh.SFTPError):
        return f"the SFTP server at {where} refused: {err.reason}"
    if isinstance(err, OSError) and err.strerror:
        return f"cannot connect to {where}: {err.strerror}"
    return f"delivery to {where} failed: {type(err).__name__}: {err}"


def _known_hosts_of(target: DeliveryTarget) -> Path:
    if target.known_hosts:
        return Path(target.known_hosts).expanduser()
    return Path("~/.ssh/known_hosts").expanduser()


def _host_key_reason(target: DeliveryTarget, where: str) -> str:
    """Unknown or changed: both refused, but a person acts differently on each."""
    kh = _known_hosts_of(target)
    parts = urlsplit(target.url)
    listed = False
    with contextlib.suppress(Exception):
        keys = asyncssh.read_known_hosts(str(kh)).match(
            parts.hostname or "", parts.hostname or "", parts.port
        )
        listed = bool(keys[0] or keys[1])
    if listed:
        return (
            f"the host key of {where} is not the one listed in {kh} (changed key: it may not be "
            "the CMO's server); refused — confirm the new key with the CMO, then update known_hosts"
        )
    return (
        f"the host key of {where} is not listed in {kh} (unknown host); refused — get the "
        "server's key from the CMO and add it to known_hosts"
    )


def _login(target: DeliveryTarget) -> dict[str, Any]:
    """asyncssh's login options: the key file, or the password read from its variable now."""
    kh = _known_hosts_of(target)
    if not kh.is_file():
        raise _LoginProblem(
            f"the known_hosts file {kh} does not exist: the server's host key must be listed "
            f"there (set known_hosts in [delivery.{target.cmo_id}])"
        )
    options: dict[str, Any] = {
        "known_hosts": str(kh),  # never None: that would accept any host key
        "agent_path": None,  # only the configured key, never an agent's
        "config": [],  # cmi.toml is the configuration, not ~/.ssh/config
        "client_keys": None,
    }
    if target.key_file:
        key = Path(target.key_file).expanduser()
        if not key.is_file():
            raise _LoginProblem(
                f"the key file {key} does not exist: fix key_file in [delivery.{target.cmo_id}]"
            )
        options["client_keys"] = [str(key)]
    if target.password_env:
        password = os.environ.get(target.password_env)
        if password is None:
            if not target.key_file:
                raise _LoginProblem(
                    f"the environment variable {target.password_env} (the SFTP password of "
                    f"[delivery.{target.cmo_id}]) is not set: set it for the run"
                )
        else:
            options["password"] = password
    return options


class _LoginProblem(Exception):
    pass


class _Sftp:
    """One target's SFTP session: files uploaded side by side, outcomes reported as they end."""

    def __init__(self, target: DeliveryTarget, emit: Callable[[Outcome], None]) -> None:
        parts = urlsplit(target.url)
        self.target = target
        self.emit = emit
        self.host = parts.hostname or ""
        self.port = parts.port or 22
        self.user = unquote(parts.username or "")
        self.folder = unquote(parts.path) or "/"
        self.where = f"{self.host}:{self.port}"
        self.broken: str | None = None

    async def run(self, jobs: list[Job]) -> None:
        try:
            options = _login(self.target)
        except _LoginProblem as err:
            self._fail_all(jobs, str(err))
            return
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(self.host, self.port, username=self.user,
                                 connect_timeout=TIMEOUT_S, login_timeout=TIMEOUT_S,
                                 keepalive_interval=TIMEOUT_S / 4, keepalive_count_max=4,
                                 **options),
                TIMEOUT_S,
            )  # fmt: skip
        except Exception as err:  # noqa: BLE001 - every reason is a failed delivery
            self._fail_all(jobs, _sftp_reason(err, self.target, self.where))
            return
        try:
            async with conn:
                sftp = await asyncio.wait_for(conn.start_sftp_client(), TIMEOUT_S)
                async with sftp:
                    await self._deliver_all(sftp, jobs)
        except Exception as err:  # noqa: BLE001 - closing a broken connection
            if self.broken is None:  # pragma: no cover - every job has reported already
                self.broken = _sftp_reason(err, self.target, self.where)

    def _fail_all(self, jobs: list[Job], reason: str) -> None:
        for job in jobs:
            self.emit(Outcome(job.file_id, FAILED, reason))

    async def _deliver_all(self, sftp: asyncssh.SFTPClient, jobs: list[Job]) -> None:
        try:
            attrs = await asyncio.wait_for(sftp.stat(self.folder), TIMEOUT_S)
            if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY:
                raise asyncssh.SFTPNoSuchFile("not a folder")
        except asyncssh.SFTPNoSuchFile:
            self._fail_all(jobs, f"the folder {self.folder} does not exist on {self.where}: "
                                 "ask the CMO to create it, or fix the URL")  # fmt: skip
            return
        except Exception as err:  # noqa: BLE001
            self._fail_all(jobs, _sftp_reason(err, self.target, self.where))
            return
        sending = asyncio.Semaphore(PARALLEL_FILES)
        closing = asyncio.Semaphore(PARALLEL_CLOSES)

        # each file takes its final name after the file before it (oldest first, §8.1):
        # the uploads overlap, the renames keep the order
        landed = [asyncio.Event() for _ in jobs]

        async def one(n: int, job: Job) -> None:
            before = landed[n - 1] if n else None
            try:
                if self.broken is not None:
                    raise _Broken(self.broken)
                outcome = await self._deliver(sftp, job, sending, closing, before)
            except (_Broken, _Unreadable) as err:
                outcome = Outcome(job.file_id, FAILED, str(err))
            except asyncssh.SFTPError as err:
                outcome = Outcome(job.file_id, FAILED, _sftp_reason(err, self.target, self.where))
            except Exception as err:  # noqa: BLE001 - the connection is gone or hangs
                if self.broken is None:
                    self.broken = _sftp_reason(err, self.target, self.where)
                outcome = Outcome(job.file_id, FAILED, self.broken)
            finally:
                landed[n].set()
            self.emit(outcome)

        await asyncio.gather(*(one(n, job) for n, job in enumerate(jobs)))

    async def _deliver(
        self,
        sftp: asyncssh.SFTPClient,
        job: Job,
        sending: asyncio.Semaphore,
        closing: asyncio.Semaphore,
        before: asyncio.Event | None,
    ) -> Outcome:
        """Send the bytes under `.<name>.part`; then (letting the next file be sent
        meanwhile) have the server sync and close it, and — once the file before it has
        its final name, or has failed — rename it to its final name."""
        final = posixpath.join(self.folder, job.name)
        part = posixpath.join(self.folder, f".{job.name}.part")
        async with sending:
            there = await self._size_of(sftp, final)
            if there is not None:
                found = await self._compare(sftp, job, final, there)
                if found.outcome == ALREADY_THERE:  # a .part left beside it is a stale copy
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(sftp.remove(part), TIMEOUT_S)
                return found
            try:
                remote = await self._send(sftp, job, part)
            except asyncssh.SFTPError as err:
                return await self._not_stored(sftp, job, part, err)
            except _Unreadable:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sftp.remove(part), TIMEOUT_S)
                raise
        async with closing:
            try:
                await self._sync_and_close(remote)
            except asyncssh.SFTPError as err:
                return await self._not_stored(sftp, job, part, err)
        if before is not None:
            await before.wait()  # holding no slot: the file before it needs one
        try:
            # SFTP's plain rename: it fails when the final name exists, never replaces it
            await asyncio.wait_for(sftp.rename(part, final), TIMEOUT_S)
        except asyncssh.SFTPError as err:
            there = await self._size_of(sftp, final)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sftp.remove(part), TIMEOUT_S)
            if there is not None:
                return await self._compare(sftp, job, final, there)
            return Outcome(job.file_id, FAILED, f"{self.where} refused to rename {part} to "
                                                f"{final}: {err.reason}")  # fmt: skip
        return Outcome(job.file_id, DELIVERED)

    async def _not_stored(
        self, sftp: asyncssh.SFTPClient, job: Job, part: str, err: asyncssh.SFTPError
    ) -> Outcome:
        """The server could not store the file: say why, and take the partial file away."""
        reason = await self._write_failure(sftp, job, err)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sftp.remove(part), TIMEOUT_S)
        return Outcome(job.file_id, FAILED, reason)

    async def _size_of(self, sftp: asyncssh.SFTPClient, path: str) -> int | None:
        try:
            attrs = await asyncio.wait_for(sftp.lstat(path), TIMEOUT_S)
        except asyncssh.SFTPNoSuchFile:
            return None
        return int(attrs.size or 0)

    async def _send(
        self, sftp: asyncssh.SFTPClient, job: Job, part: str
    ) -> asyncssh.SFTPClientFile:
        """Open `part` (replacing what a stopped run left there) and write the file's bytes
        (asyncssh pipelines the write requests); returns the open file."""
        try:
            fh = job.open()
        except OSError as err:
            raise _unreadable(job, err) from err
        try:
            remote = await asyncio.wait_for(sftp.open(part, "wb"), TIMEOUT_S)
        except BaseException:
            fh.close()
            raise
        try:
            offset = 0
            with fh:
                while True:
                    try:
                        chunk = fh.read(CHUNK)
                    except OSError as err:
                        raise _unreadable(job, err) from err
                    if not chunk:
                        break
                    await asyncio.wait_for(remote.write(chunk, offset), TIMEOUT_S)
                    offset += len(chunk)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(remote.close(), TIMEOUT_S)
            raise
        return remote

    async def _sync_and_close(self, remote: asyncssh.SFTPClientFile) -> None:
        """The server writes the file to its disk (fsync@openssh.com, where it has it)
        before the rename: a server that crashes after it shows the whole file or none."""
        try:
            with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                await asyncio.wait_for(remote.fsync(), TIMEOUT_S)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(remote.close(), TIMEOUT_S)
            raise
        await asyncio.wait_for(remote.close(), TIMEOUT_S)  # a late write error shows here

    async def _write_failure(
        self, sftp: asyncssh.SFTPClient, job: Job, err: asyncssh.SFTPError
    ) -> str:
        """SFTP version 3 says only "Failure" for a full disk: ask the server how much room
        there is, and say so when the file does not fit."""
        with contextlib.suppress(Exception):
            vfs = await asyncio.wait_for(sftp.statvfs(self.folder), TIMEOUT_S)
            free = int(vfs.bavail) * int(vfs.frsize)
            if free < job.size():
                return (
                    f"the disk of {self.where} is full ({free} bytes free in {self.folder}, the "
                    f"file has {job.size()}): ask the CMO to free space; the next run tries again"
                )
        return f"{self.where} could not store the file: {err.reason}"

    async def _compare(
        self, sftp: asyncssh.SFTPClient, job: Job, final: str, there: int
    ) -> Outcome:
        size, digest = _local_digest(job)
        where = f"{self.where}:{final}"
        if there != size:
            return Outcome(job.file_id, FAILED, _conflict(where, there, size))
        remote = await asyncio.wait_for(sftp.open(final, "rb"), TIMEOUT_S)
        try:
            theirs = hashlib.sha256()
            offset = 0
            while offset < there:
                chunk = cast(bytes, await asyncio.wait_for(remote.read(CHUNK, offset), TIMEOUT_S))
                if not chunk:
                    break
                theirs.update(chunk)
                offset += len(chunk)
        finally:
            with contextlib.suppress(asyncssh.SFTPError):
                await asyncio.wait_for(remote.close(), TIMEOUT_S)
        if theirs.hexdigest() != digest:
            return Outcome(job.file_id, FAILED, _conflict(where, there, size))
        return Outcome(job.file_id, ALREADY_THERE, "the same file was already on the server")


# --------------------------------------------------------------------------- folders


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _rename_no_replace(part: Path, final: Path) -> None:
    """Rename that fails (FileExistsError) when `final` exists: a hard link, then the temp
    name's removal; where the file system has no hard links, a check then a rename (one run
    at a time holds the state, so nothing of ours races it)."""
    try:
        os.link(part, final)
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EXDEV,
            errno.EMLINK,
        ):
            raise
        if final.exists():
            raise FileExistsError(errno.EEXIST, "File exists", str(final)) from err
        os.rename(part, final)
        return
    part.unlink()


def _deliver_to_folder(
    target: DeliveryTarget, jobs: list[Job], emit: Callable[[Outcome], None]
) -> None:
    folder = Path(unquote(urlsplit(target.url).path))
    if not folder.is_dir():
        for job in jobs:
            emit(Outcome(job.file_id, FAILED, f"the folder {folder} does not exist (a delivery "
                                              "folder is never created): create it or fix the URL"))  # fmt: skip
        return
    for job in jobs:
        emit(_deliver_one_to_folder(folder, job))


def _deliver_one_to_folder(folder: Path, job: Job) -> Outcome:
    final = folder / job.name
    part = folder / f".{job.name}.part"
    try:
        if final.exists():
            found = _compare_local(job, final)
            if found.outcome == ALREADY_THERE:
                # a run killed between the hard link and the removal of the temporary name
                part.unlink(missing_ok=True)
            return found
        try:
            src = job.open()
        except OSError as err:
            raise _unreadable(job, err) from err
        with src, part.open("wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        try:
            _rename_no_replace(part, final)
        except FileExistsError:
            part.unlink(missing_ok=True)
            return _compare_local(job, final)
        _fsync_dir(folder)
    except _Unreadable as err:
        return Outcome(job.file_id, FAILED, str(err))
    except OSError as err:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        return Outcome(job.file_id, FAILED, f"cannot write {final}: {err.strerror or err}")
    return Outcome(job.file_id, DELIVERED)


def _compare_local(job: Job, final: Path) -> Outcome:
    size, digest = _local_digest(job)
    with final.open("rb") as fh:
        there, theirs = _sha256_stream(fh.read)
    if (there, theirs) != (size, digest):
        return Outcome(job.file_id, FAILED, _conflict(str(final), there, size))
    return Outcome(job.file_id, ALREADY_THERE, "the same file was already in the folder")


# --------------------------------------------------------------------------- all targets


async def _deliver_targets(
    work: list[tuple[DeliveryTarget, list[Job]]], emit: Callable[[Outcome], None]
) -> None:
    tasks = []
    for target, jobs in work:
        if not jobs:
            continue
        if urlsplit(target.url).scheme == "sftp":
            tasks.append(_Sftp(target, emit).run(jobs))
        else:
            tasks.append(asyncio.to_thread(_deliver_to_folder, target, jobs, emit))
    await asyncio.gather(*tasks)


def deliver(work: list[tuple[DeliveryTarget, list[Job]]]) -> Iterator[list[Outcome]]:
    """Deliver each target's files (each target's oldest first; the targets side by side)
    and yield the outcomes in batches as they end, so the caller can mark each file soon
    after its rename while the uploads go on.  Every job gets exactly one outcome."""
    outcomes: queue.Queue[Outcome | BaseException | None] = queue.Queue()

    def main() -> None:
        try:
            asyncio.run(_deliver_targets(work, outcomes.put))
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            outcomes.put(err)
        outcomes.put(None)

    worker = threading.Thread(target=main, name="cmi-delivery", daemon=True)
    worker.start()
    finished = False
    try:
        while not finished:
            batch: list[Outcome] = []
            item = outcomes.get()
            while True:
                if item is None:
                    finished = True
                    break
                if isinstance(item, BaseException):
                    raise item
                batch.append(item)
                try:
                    item = outcomes.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
    finally:
        worker.join()
