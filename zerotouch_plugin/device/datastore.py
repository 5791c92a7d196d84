"""The device's datastores (RFC 8342): running, startup and operational.

* running lives in memory and is loaded from startup when the device starts;
* startup is the file ``startup.json`` (RFC 7951) in the device folder, replaced atomically
  (temporary file, fsync, rename, fsync of the folder) so a crash never leaves a torn file;
* operational is running plus the state trees plugins publish (RFC 8342 §5.3).

Every write is validated against the schema first and leaves the datastore unchanged when it
fails. Writes are serialised by one asyncio lock; the edit and its validation run in a thread
under it, so reads and other sessions are served meanwhile, and a write whose validation would
check more than ``edit_budget`` list entries is refused before it starts (``PayloadTooLarge``).
NETCONF-style locks (RFC 6241 §7.5) are held per datastore by a session id and checked on
every write, whichever protocol makes it; a write to several datastores (RESTCONF's running and
startup) is refused whole when any of them is locked. Serialisations of an unchanged datastore
are cached (``memo``) so reads cost no rebuild.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from zerotouch_plugin._files import discard, stage, sync_folder, write_atomic
from zerotouch_plugin.device.edit import apply_edit
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.device.types import RpcFunction, Tree
from zerotouch_plugin.errors import (
    InUse,
    LockDenied,
    LockNotHeld,
    SchemaError,
    StorageError,
    UnsupportedOperation,
)

__all__ = [
    "DEFAULT_EDIT_BUDGET",
    "STARTUP_FILE",
    "Datastore",
    "Datastores",
    "RpcFunction",
    "write_atomically",
]

log = logging.getLogger(__name__)

STARTUP_FILE = "startup.json"
DEFAULT_EDIT_BUDGET = 20_000  # list entries one write may have validated (about 2 s)
# Memo keys come from clients (filters): entries are bounded by number and, for the text of
# replies, by size. Trees are memoised under the server's own few keys and count as 0.
_MEMO_ENTRIES = 256
_MEMO_CHARS = 16 * 1024 * 1024
T = TypeVar("T")
Listener = Callable[["Datastore", Tree], None]
EventListener = Callable[[datetime, Tree], None]


class Datastore(StrEnum):
    RUNNING = "running"
    STARTUP = "startup"
    OPERATIONAL = "operational"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (the old or the new content survives any crash), mode
    0600: the startup configuration and the SSH host keys are the device's own secrets."""
    write_atomic(path, data, 0o600)


class Datastores:
    """running / startup / operational of one device, shared by all its sessions."""

    def __init__(
        self, schema: DeviceSchema, folder: Path, *, edit_budget: int = DEFAULT_EDIT_BUDGET
    ) -> None:
        self.schema = schema
        self.folder = folder
        self.edit_budget = edit_budget
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f".{STARTUP_FILE}.*.tmp"):
            stale.unlink(missing_ok=True)  # a write interrupted by a crash; the old file stands
        startup = self._load_startup()
        self._trees: dict[Datastore, Tree] = {
            Datastore.RUNNING: startup,
            Datastore.STARTUP: startup,
        }
        self._versions: dict[Datastore, int] = dict.fromkeys(Datastore, 1)
        self._locks: dict[Datastore, int] = {}
        self._write = asyncio.Lock()
        self._memo: dict[tuple[Datastore, str], tuple[int, Any, int]] = {}
        self._memo_chars = 0
        self._published: dict[str, Tree] = {}
        self._providers: dict[str, Callable[[], Tree]] = {}
        self._listeners: list[Listener] = []
        self._event_listeners: list[EventListener] = []
        self.rpcs: dict[str, RpcFunction] = {}
        self._operational: tuple[tuple[int, int], Tree] | None = None
        self.publish_state("ietf-yang-library", schema.yang_library())

    @property
    def startup_path(self) -> Path:
        return self.folder / STARTUP_FILE

    def _load_startup(self) -> Tree:
        path = self.startup_path
        if not path.exists():
            return {}
        try:
            tree = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise StorageError(f"{path}: unreadable startup configuration: {exc}") from exc
        if not isinstance(tree, dict):
            raise StorageError(f"{path}: startup configuration is not a JSON object")
        try:
            self.schema.validate(tree)
        except SchemaError as exc:
            raise StorageError(f"{path}: startup configuration is invalid: {exc}") from exc
        return tree

    # -- reading ---------------------------------------------------------------------------

    def get(self, ds: Datastore) -> Tree:
        """A private copy of the datastore's RFC 7951 tree."""
        return copy.deepcopy(self.view(ds))

    def view(self, ds: Datastore) -> Tree:
        """The datastore's tree itself, shared: callers must not modify it."""
        if ds is Datastore.OPERATIONAL:
            return self._operational_tree()
        return self._trees[ds]

    def version(self, ds: Datastore) -> int:
        """Changes whenever the datastore's content may have changed."""
        if ds is Datastore.OPERATIONAL:
            if self._providers:
                self._versions[ds] += 1
            return self._versions[Datastore.RUNNING] * 1_000_003 + self._versions[ds]
        return self._versions[ds]

    def memo(self, ds: Datastore, key: str, build: Callable[[Tree], T]) -> T:
        """``build(view(ds))``, cached until the datastore changes."""
        version = self.version(ds)
        hit = self._memo.get((ds, key))
        if hit is not None and hit[0] == version:
            return hit[1]  # type: ignore[no-any-return]
        value = build(self.view(ds))
        self._remember(ds, key, version, value)
        return value

    async def memo_async(self, ds: Datastore, key: str, build: Callable[[Tree], Awaitable[T]]) -> T:
        """``memo`` for a build that waits (the datastore may change meanwhile: the value is
        kept for the version it was built from)."""
        version = self.version(ds)
        hit = self._memo.get((ds, key))
        if hit is not None and hit[0] == version:
            return hit[1]  # type: ignore[no-any-return]
        value = await build(self.view(ds))
        self._remember(ds, key, version, value)
        return value

    def _remember(self, ds: Datastore, key: str, version: int, value: Any) -> None:
        """Keep ``value``, evicting the oldest entries past ``_MEMO_ENTRIES`` or
        ``_MEMO_CHARS``; a reply larger than the whole memo is not kept."""
        self._forget((ds, key))
        size = len(value) if isinstance(value, str) else 0
        if size > _MEMO_CHARS:
            return
        while self._memo and (
            len(self._memo) >= _MEMO_ENTRIES or self._memo_chars + size > _MEMO_CHARS
        ):
            self._forget(next(iter(self._memo)))
        self._memo[(ds, key)] = (version, value, size)
        self._memo_chars += size

    def _forget(self, key: tuple[Datastore, str]) -> None:
        entry = self._memo.pop(key, None)
        if entry is not None:
            self._memo_chars -= entry[2]

    def _operational_tree(self) -> Tree:
        stamp = (self._versions[Datastore.RUNNING], self._versions[Datastore.OPERATIONAL])
        if self._operational is not None and self._operational[0] == stamp and not self._providers:
            return self._operational[1]
        tree = self._trees[Datastore.RUNNING]
        states = [*self._published.values(), *(p() for p in self._providers.values())]
        for state in states:
            tree = apply_edit(self.schema, tree, state, allow_state=True)
        self._operational = (stamp, tree)
        return tree

    # -- writing ---------------------------------------------------------------------------

    async def validate(self, tree: Mapping[str, Any]) -> None:
        """Raise SchemaError unless ``tree`` is a valid configuration (in a thread)."""
        await asyncio.to_thread(self.schema.validate, tree, budget=self.edit_budget)

    def check_writable(self, ds: Datastore, session_id: int) -> None:
        """RFC 6241 §7.5: only the lock holder may write a locked datastore."""
        if ds is Datastore.OPERATIONAL:
            raise UnsupportedOperation("the operational datastore is read-only (RFC 8342 §5.3)")
        holder = self._locks.get(ds)
        if holder is not None and holder != session_id:
            raise InUse(f"{ds} is locked by session {holder}", holder=holder)

    async def commit(self, ds: Datastore, tree: Mapping[str, Any], *, session_id: int) -> None:
        """Validate ``tree`` and make it the content of ``ds`` (startup: durably)."""
        await self.modify(ds, lambda _current: tree, session_id=session_id)

    async def modify(
        self,
        ds: Datastore,
        change: Callable[[Tree], Mapping[str, Any]],
        *,
        session_id: int,
        test_only: bool = False,
        also: tuple[Datastore, ...] = (),
    ) -> Tree:
        """Read-modify-write under the write lock: ``change`` gets the current tree (shared,
        do not mutate) and returns the new one, which is validated and committed unless
        ``test_only``. ``change`` and the validation run in a thread. Returns the new tree.

        ``also``: datastores that take the new tree in the same commit (RFC 8040 §1.4: startup
        follows running); a lock on any of them refuses the whole write."""
        targets = (ds, *also)
        async with self._write:
            for target in targets:
                self.check_writable(target, session_id)
            current = self._trees[ds]

            def changed() -> Tree:
                new = dict(change(current))
                self.schema.validate(new, previous=current, budget=self.edit_budget)
                return new

            new = await asyncio.to_thread(changed)
            if test_only:
                return new
            await self._install(targets, new, session_id)
        for target in targets:
            self._notify(target)
        return new

    async def _install(self, targets: tuple[Datastore, ...], tree: Tree, session_id: int) -> None:
        """Make a valid ``tree`` the content of ``targets``, under the write lock.

        ``lock`` does not wait for the write lock, so nothing awaits between the last lock
        check and the last change: a lock is granted before the whole commit (which it then
        refuses) or after it, never between running and startup. Startup is staged first and
        only renamed into place then."""
        staged = await self._stage(tree) if Datastore.STARTUP in targets else []
        try:
            for ds in targets:
                self.check_writable(ds, session_id)  # again: a lock may have been taken meanwhile
            for name in staged:
                os.replace(name, self.startup_path)
        except OSError as exc:
            discard(staged)
            raise StorageError(f"cannot write {self.startup_path}: {exc}") from exc
        except BaseException:
            discard(staged)
            raise
        for ds in targets:
            self._trees[ds] = tree
            self._versions[ds] += 1
        if staged:
            try:
                await asyncio.to_thread(sync_folder, self.folder)
            except OSError as exc:
                raise StorageError(f"cannot make {self.startup_path} durable: {exc}") from exc

    async def copy(self, source: Datastore, target: Datastore, *, session_id: int) -> None:
        """copy-config between configuration datastores (RFC 6241 §7.3). The source is valid
        and never mutated: the target shares it, with no second validation."""
        if source is Datastore.OPERATIONAL:
            raise UnsupportedOperation("the operational datastore is not a configuration")
        async with self._write:
            await self._install((target,), self._trees[source], session_id)
        self._notify(target)

    async def delete(self, ds: Datastore, *, session_id: int) -> None:
        """delete-config (RFC 6241 §7.4): startup may be emptied, running may not."""
        if ds is not Datastore.STARTUP:
            raise UnsupportedOperation(f"delete-config is not allowed on {ds} (RFC 6241 §7.4)")
        await self.commit(ds, {}, session_id=session_id)

    async def _stage(self, tree: Tree) -> list[str]:
        """``tree`` written and fsynced beside ``startup.json`` (in a thread), to rename."""

        def write() -> list[str]:
            data = json.dumps(tree, indent=2, sort_keys=True).encode() + b"\n"
            return stage([(self.startup_path, data, 0o600)])

        writing = asyncio.ensure_future(asyncio.to_thread(write))
        try:
            return await asyncio.shield(writing)
        except OSError as exc:
            raise StorageError(f"cannot write {self.startup_path}: {exc}") from exc
        except asyncio.CancelledError:
            # kill-session (RFC 6241 §7.9) aborts the write: its thread cannot be stopped, so
            # what it staged is removed once it is done; startup stays as it was.
            with contextlib.suppress(OSError):
                discard(await writing)
            raise

    def _notify(self, ds: Datastore) -> None:
        for listener in list(self._listeners):
            try:
                listener(ds, self._trees[ds])
            except Exception:
                log.exception("datastore listener failed")
        # RFC 6470 §2.1.3: every configuration change is an event.
        self.emit_event(
            {"ietf-netconf-notifications:netconf-config-change": {"datastore": ds.value}}
        )

    # -- locks (RFC 6241 §7.5, §7.6) -------------------------------------------------------

    def lock(self, ds: Datastore, session_id: int) -> None:
        holder = self._locks.get(ds)
        if holder is not None:
            raise LockDenied(f"{ds} is already locked by session {holder}", holder=holder)
        if ds is Datastore.OPERATIONAL:
            raise UnsupportedOperation("the operational datastore cannot be locked")
        self._locks[ds] = session_id

    def unlock(self, ds: Datastore, session_id: int) -> None:
        if self._locks.get(ds) != session_id:
            raise LockNotHeld(f"{ds} is not locked by this session")
        del self._locks[ds]

    def lock_holder(self, ds: Datastore) -> int | None:
        return self._locks.get(ds)

    def release_session(self, session_id: int) -> None:
        """A closed or killed session loses its locks (RFC 6241 §7.5)."""
        for ds in [d for d, holder in self._locks.items() if holder == session_id]:
            del self._locks[ds]

    # -- state and events ------------------------------------------------------------------

    def publish_state(self, name: str, tree: Mapping[str, Any]) -> None:
        """Set the state subtree ``name`` contributes to operational (replacing its last)."""
        self._published[name] = dict(tree)
        self._versions[Datastore.OPERATIONAL] += 1

    def register_state(self, name: str, provider: Callable[[], Tree]) -> None:
        """A provider called on every operational read (for fast-changing state)."""
        self._providers[name] = provider
        self._versions[Datastore.OPERATIONAL] += 1

    def subscribe(self, callback: Listener) -> None:
        """``callback(ds, tree)`` after every committed change."""
        self._listeners.append(callback)

    def subscribe_events(self, callback: EventListener) -> None:
        """``callback(event_time, notification)`` for every event (RFC 5277 stream NETCONF)."""
        self._event_listeners.append(callback)

    def unsubscribe_events(self, callback: EventListener) -> None:
        if callback in self._event_listeners:
            self._event_listeners.remove(callback)

    def emit_event(self, notification: Mapping[str, Any], *, now: datetime | None = None) -> None:
        """Send a notification: an RFC 7951 tree whose one member is the notification node."""
        when = now or datetime.now(UTC)
        tree = dict(notification)
        for listener in list(self._event_listeners):
            try:
                listener(when, tree)
            except Exception:
                log.exception("event listener failed")

    def register_rpc(self, name: str, function: RpcFunction) -> None:
        """Implement the YANG RPC ``module:name`` (served by NETCONF and RESTCONF)."""
        module, sep, local = name.partition(":")
        node = self.schema.root.get_child(local, module) if sep else None
        if node is None:
            raise ValueError(f"no RPC {name!r} in the schema")
        self.rpcs[name] = function
