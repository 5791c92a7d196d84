"""XPath filters evaluated in a worker process, within a time budget (RFC 6241 §8.9).

An XPath 1.0 expression can cost the tree's size to any power (``//*[//*[//*]]``), and
yangson's evaluator is pure Python that no thread can interrupt, so the event loop never runs
it: ``XPathWorker`` hands the datastore tree and the expression to one child process and waits
without blocking. The child stops an evaluation itself when the budget runs out (a timer
signal), answers ``XPathTooCostly`` and serves the next one; should it not answer within the
budget plus a grace period (stuck in C, e.g. a regular expression), it is killed and a new one
started for the next filter. Filters are evaluated one at a time; every other request (and the
sessions themselves) are served meanwhile.

The child builds its own copy of the schema from the module files (``DeviceSchema``), so
nothing is shared with the server but pipes: length-prefixed JSON messages on stdin/stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import struct
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Any

import zerotouch_plugin
from zerotouch_plugin.device.schema import DeviceSchema, ModuleInfo
from zerotouch_plugin.errors import SchemaError, ZerotouchError
from zerotouch_plugin.services.netconf.xpath import XPathFailed, XPathTooCostly, apply_xpath_filter

__all__ = ["XPathWorker", "main"]

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds the child may take to import and compile the schema
_HEADER = struct.Struct(">I")
# The errors the child reports by name (anything else is an XPathFailed).
_ERRORS: Mapping[str, type[ZerotouchError]] = {
    "SchemaError": SchemaError,
    "XPathFailed": XPathFailed,
    "XPathTooCostly": XPathTooCostly,
}
Tree = dict[str, Any]


def _over_budget(budget: float) -> XPathTooCostly:
    return XPathTooCostly(
        f"the XPath filter was stopped after its budget of {budget:g} s (xpath_budget in "
        "device.toml)",
        path="/filter",
    )


class XPathWorker:
    """One child process evaluating filters for a device's sessions, started when needed."""

    def __init__(self, schema: DeviceSchema, budget: float) -> None:
        """``budget``: the seconds one filter may take (``NetconfLimits.xpath_budget``)."""
        if budget <= 0:
            raise ValueError("the XPath budget must be positive")
        self.budget = budget
        self.grace = max(1.0, budget)  # for the transfer, and for a child that must be killed
        self._spec = {"modules": [_module_json(m) for m in schema.modules], "budget": budget}
        self._proc: asyncio.subprocess.Process | None = None
        self._turn = asyncio.Lock()
        self._closed = False
        self._last: asyncio.subprocess.Process | None = None  # the child close() stopped

    async def apply(
        self, tree: Mapping[str, Any], select: str, namespaces: Mapping[str | None, str]
    ) -> Tree:
        """``apply_xpath_filter`` in the child: data, or the error it raised, or
        ``XPathTooCostly`` once the budget is spent."""
        try:
            request = _frame(
                {"tree": tree, "select": select, "namespaces": list(namespaces.items())}
            )
        except (TypeError, ValueError) as exc:  # a plugin published something not JSON
            raise XPathFailed(f"the data cannot be filtered: {exc}", path="/filter") from None
        async with self._turn:
            proc = await self._running()
            assert proc.stdin is not None and proc.stdout is not None
            started = time.monotonic()
            try:
                proc.stdin.write(request)
                async with asyncio.timeout(self.budget + self.grace):
                    await proc.stdin.drain()
                    reply = await _read_frame(proc.stdout)
            except TimeoutError:
                log.warning("XPath filter %r: the worker overran its budget; killed", select)
                self._kill()
                raise _over_budget(self.budget) from None
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if not self._closed:
                    log.warning("XPath worker failed (%s); a new one starts when needed", exc)
                self._kill()
                raise XPathFailed(
                    f"the XPath filter {select!r} could not be evaluated: the worker failed",
                    path="/filter",
                ) from None
            except BaseException:  # cancelled (session or server closing): state unknown
                self._kill()
                raise
            log.debug("XPath filter %r: %.3f s", select, time.monotonic() - started)
        if not isinstance(reply, dict):
            raise XPathFailed(f"the XPath worker answered {type(reply).__name__}", path="/filter")
        if isinstance(reply.get("data"), dict):
            return reply["data"]  # type: ignore[no-any-return]
        error = reply.get("error") or {}
        if error.get("class") == "budget":
            raise _over_budget(self.budget)
        cls = _ERRORS.get(str(error.get("class")), XPathFailed)
        raise cls(str(error.get("message", "XPath evaluation failed")), path=error.get("path"))

    def close(self) -> None:
        """Stop the child for good (it also leaves by itself when the server's end of the
        pipe closes, or the server dies)."""
        self._closed = True
        self._last = self._kill() or self._last

    async def wait_closed(self) -> None:
        """After ``close``: until the last child is reaped (before the event loop ends)."""
        if self._last is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._last.wait(), 5)

    async def _running(self) -> asyncio.subprocess.Process:
        if self._closed:
            raise XPathFailed("the server is closing", path="/filter")
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        env = dict(os.environ)
        package_root = str(Path(zerotouch_plugin.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            f"from {__name__} import main; main()",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        self._proc = proc
        try:
            proc.stdin.write(_frame(self._spec))
            async with asyncio.timeout(START_TIMEOUT):
                await proc.stdin.drain()
                ready = await _read_frame(proc.stdout)
            if ready != {"ready": True}:
                raise ValueError(f"it said {ready!r}")
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self._kill()
            log.error("XPath worker did not start: %s", exc or type(exc).__name__)
            raise XPathFailed("the XPath worker did not start", path="/filter") from None
        except BaseException:
            self._kill()
            raise
        log.info("XPath worker %d started (budget %g s)", proc.pid, self.budget)
        return proc

    def _kill(self) -> asyncio.subprocess.Process | None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            if proc.stdin is not None:
                proc.stdin.close()
        return proc


def _module_json(m: ModuleInfo) -> dict[str, Any]:
    return {
        "name": m.name,
        "revision": m.revision,
        "namespace": m.namespace,
        "prefix": m.prefix,
        "path": str(m.path.resolve()),
        "implemented": m.implemented,
        "features": list(m.features),
        "submodules": [[n, r, str(p.resolve())] for n, r, p in m.submodules],
    }


def _module_info(d: Mapping[str, Any]) -> ModuleInfo:
    return ModuleInfo(
        d["name"],
        d["revision"],
        d["namespace"],
        d["prefix"],
        Path(d["path"]),
        d["implemented"],
        tuple(d["features"]),
        tuple((n, r, Path(p)) for n, r, p in d["submodules"]),
    )


def _frame(message: Any) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return json.loads(await reader.readexactly(size))


# -- the child ---------------------------------------------------------------------------


class _Stop(BaseException):
    """Raised by the budget timer inside the evaluation (a BaseException: no ``except
    Exception`` on the way, ours or yangson's, swallows it)."""


_armed = False


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    if _armed:
        raise _Stop


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _receive(stream: IO[bytes]) -> Any:
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    body = _read_exact(stream, _HEADER.unpack(header)[0])
    return None if body is None else json.loads(body)


def _evaluate(schema: DeviceSchema, request: Mapping[str, Any], budget: float) -> dict[str, Any]:
    global _armed
    namespaces = {prefix: ns for prefix, ns in request["namespaces"]}
    try:
        _armed = True
        signal.setitimer(signal.ITIMER_REAL, budget)
        try:
            return {"data": apply_xpath_filter(schema, request["tree"], request["select"],
                                               namespaces)}  # fmt: skip
        finally:
            _armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Stop:
        return {"error": {"class": "budget"}}
    except ZerotouchError as exc:
        return {"error": {"class": type(exc).__name__, "message": exc.message, "path": exc.path}}


def _die_with_parent() -> None:
    """Linux: SIGKILL when the server dies, even in the middle of a C call that ignores the
    budget timer (PR_SET_PDEATHSIG); elsewhere the closed stdin ends the child."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main() -> None:
    """The child: the schema first, then one filter per message until stdin closes."""
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, format="xpath worker: %(levelname)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops it (Ctrl-C hits the group)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    spec = _receive(stdin)
    if spec is None:
        return
    schema = DeviceSchema([_module_info(m) for m in spec["modules"]])
    budget = float(spec["budget"])
    signal.signal(signal.SIGALRM, _alarm)
    stdout.write(_frame({"ready": True}))
    stdout.flush()
    while (request := _receive(stdin)) is not None:
        stdout.write(_frame(_evaluate(schema, request, budget)))
        stdout.flush()
