"""NETCONF sessions (RFC 6241) independent of the transport (SSH or TLS).

A transport creates a session with ``NetconfServer.open_session`` and passes it the bytes it
reads; the session answers through the ``send``/``close`` callables it was given. Messages are
handled one at a time, in order, by one task per session; while the transport's write buffer
is over its high-water mark (``pause_writing``) the next one waits. ``rpc_error_xml`` is the
one place where a ``ZerotouchError`` becomes an ``<rpc-error>`` (RFC 6241 §4.3).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from zerotouch_plugin.artifacts.xmlsafe import parse_untrusted
from zerotouch_plugin.config import NetconfLimits
from zerotouch_plugin.device.datastore import Datastores
from zerotouch_plugin.errors import (
    InvalidInput,
    LockDenied,
    MissingAttribute,
    PayloadTooLarge,
    TooManySessions,
    UnsupportedOperation,
    ZerotouchError,
)
from zerotouch_plugin.services.netconf.framing import Framer
from zerotouch_plugin.services.netconf.xpath_worker import XPathWorker

__all__ = [
    "BASE_NS",
    "NetconfServer",
    "NetconfSession",
    "RpcHandler",
    "error_path_xml",
    "rpc_error_xml",
]

log = logging.getLogger(__name__)

BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
BASE_10 = "urn:ietf:params:netconf:base:1.0"
BASE_11 = "urn:ietf:params:netconf:base:1.1"
_HELLO = f"{{{BASE_NS}}}hello"
_RPC = f"{{{BASE_NS}}}rpc"
_RPC_REPLY = f"{{{BASE_NS}}}rpc-reply"

RpcHandler = Callable[["NetconfSession", etree._Element], Awaitable[str | None]]

# RFC 6241 Appendix A: the error-type each error-tag is reported with.
_ERROR_TYPE: Mapping[str, str] = {
    "malformed-message": "rpc",
    "too-big": "rpc",
    "operation-not-supported": "protocol",
    "lock-denied": "protocol",
    "in-use": "protocol",
    "missing-attribute": "rpc",
    "bad-attribute": "protocol",
    "unknown-element": "protocol",
    "missing-element": "protocol",
    "bad-element": "protocol",
    "access-denied": "protocol",
}


def parse_xml(data: bytes) -> etree._Element:
    """Parse one message with the hardened parser (DOCTYPE refused)."""
    return parse_untrusted(data, "the message")


_STEP = re.compile(r"/(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*)((?:\[[^\]]*\])*)")
_PREDICATE = re.compile(r"\[(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*)=(\"[^\"]*\"|'[^']*')\]")


def error_path_xml(path: str, namespaces: Mapping[str, tuple[str, str]]) -> str:
    """``<error-path>`` (RFC 6241 §4.3) for a JSON-style instance path.

    ``/ietf-system:system/hostname`` becomes ``/sys:system/sys:hostname`` with the prefixes
    declared on the element; ``namespaces`` maps module name -> (prefix, namespace).
    """
    decls: dict[str, str] = {}
    steps: list[str] = []
    module: str | None = None
    for m in _STEP.finditer(path):
        module = m.group(1) or module
        if module is None or module not in namespaces:
            return f"<error-path>{escape(path)}</error-path>"
        prefix, ns = namespaces[module]
        decls[prefix] = ns
        preds = "".join(
            f"[{prefix}:{p.group(2)}={p.group(3)}]" for p in _PREDICATE.finditer(m.group(3))
        )
        steps.append(f"/{prefix}:{m.group(2)}{preds}")
    attrs = "".join(f" xmlns:{p}={quoteattr(ns)}" for p, ns in decls.items())
    return f"<error-path{attrs}>{escape(''.join(steps) or path)}</error-path>"


def rpc_error_xml(
    exc: ZerotouchError, namespaces: Mapping[str, tuple[str, str]] | None = None
) -> str:
    """The ``<rpc-error>`` for an error (RFC 6241 §4.3): tag, type, severity, path, message."""
    tag = exc.netconf_tag
    error_type = _ERROR_TYPE.get(tag, "application")
    parts = [
        f"<rpc-error><error-type>{error_type}</error-type><error-tag>{tag}</error-tag>"
        "<error-severity>error</error-severity>"
    ]
    if exc.path:
        parts.append(error_path_xml(exc.path, namespaces or {}))
    parts.append(f'<error-message xml:lang="en">{escape(exc.message)}</error-message>')
    info = dict(exc.info)
    if isinstance(exc, LockDenied) and exc.holder is not None:
        info["session-id"] = str(exc.holder)
    if info:  # RFC 6241 Appendix A: what each tag's error-info names
        members = "".join(f"<{name}>{escape(text)}</{name}>" for name, text in info.items())
        parts.append(f"<error-info>{members}</error-info>")
    parts.append("</rpc-error>")
    return "".join(parts)


def _reply_start(rpc: etree._Element | None) -> str:
    """``<rpc-reply`` with every attribute of the ``<rpc>`` (RFC 6241 §4.2). lxml declares each
    attribute namespace once and writes ``xml:`` attributes without a declaration."""
    if rpc is None:
        return f'<rpc-reply xmlns="{BASE_NS}">'
    if len(rpc.attrib) == 1 and "message-id" in rpc.attrib:
        return f'<rpc-reply xmlns="{BASE_NS}" message-id={quoteattr(str(rpc.get("message-id")))}>'
    used = {etree.QName(key).namespace for key in rpc.attrib}
    nsmap: dict[str | None, str] = {None: BASE_NS}
    nsmap.update((p, ns) for p, ns in rpc.nsmap.items() if p and ns in used)
    reply = etree.Element(_RPC_REPLY, attrib=rpc.attrib, nsmap=nsmap)  # type: ignore[arg-type]
    return etree.tostring(reply, encoding="unicode").removesuffix("/>") + ">"


@dataclass(frozen=True)
class SessionInfo:
    """What the transport knows about the peer."""

    username: str
    transport: str  # "netconf-ssh" or "netconf-tls"
    peer: str


class NetconfSession:
    """One NETCONF session: hello exchange, then RPCs in order (RFC 6241 §4)."""

    def __init__(
        self,
        server: NetconfServer,
        session_id: int,
        info: SessionInfo,
        send: Callable[[bytes], None],
        close: Callable[[], None],
        abort: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self.session_id = session_id
        self.info = info
        self._send = send
        self._close = close
        self._abort = abort or close
        self.framer = Framer(max_message=server.limits.max_message)
        self._buffered = 0  # what this session adds to server.buffered
        self._timer: asyncio.TimerHandle | None = None
        self.hello_done = False
        self.closed = False
        self.close_after_reply = False  # set by close-session (RFC 6241 §7.8)
        self._in_rpc = False
        self.subscribed = False
        self.on_close: list[Callable[[], None]] = []
        self._wakeup = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._unread = 0  # bytes sent since the transport paused
        self._task: asyncio.Task[None] | None = None

    @property
    def datastores(self) -> Datastores:
        return self.server.datastores

    def start(self) -> None:
        """Send our hello (end-of-message framed, RFC 6242 §4.1) and start reading."""
        self._send(self.framer.encode(self.server.hello(self.session_id)))
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())
        self._arm_timer(self.server.limits.hello_timeout)

    def _arm_timer(self, seconds: float) -> None:
        """(Re)start the hello or idle timer; 0 seconds means none."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds > 0 and not self.closed:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._timed_out)

    def _timed_out(self) -> None:
        """No hello within hello_timeout, or no RPC within idle_timeout: the peer does not
        hold a session (and its buffers) open. RFC 6241 mandates neither timeout; a session
        with an RPC in progress or a notification subscription is not idle."""
        self._timer = None
        if self.closed:
            return
        limits = self.server.limits
        if not self.hello_done:
            log.warning("session %d: no hello within %s s; closing", self.session_id,
                        limits.hello_timeout)  # fmt: skip
        elif self._in_rpc or self.subscribed:
            self._arm_timer(limits.idle_timeout)
            return
        else:
            log.warning("session %d: no rpc within %s s; closing", self.session_id,
                        limits.idle_timeout)  # fmt: skip
        self.close()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.framer.feed(data)
            self._account()
            self.server.check_buffered()
        except ZerotouchError as exc:
            self._fail(exc)
            return
        self._wakeup.set()

    def _account(self) -> None:
        """Keep the server's total of buffered bytes up to date with this session's."""
        now = self.framer.buffered
        self.server.buffered += now - self._buffered
        self._buffered = now

    def _fail(self, exc: ZerotouchError) -> None:
        """Over a buffer cap or broken framing: an ``<rpc-error>`` without message-id
        (RFC 6241 §4.3, the message was never parsed) once the hellos are done, then close."""
        log.warning("session %d: %s; closing", self.session_id, exc.one_line())
        if self.hello_done:
            self.send_message((_reply_start(None) + self.server.rpc_error(exc) +
                               "</rpc-reply>").encode())  # fmt: skip
        self.close()

    def send_message(self, message: bytes) -> None:
        if not self.closed:
            framed = self.framer.encode(message)
            if not self._writable.is_set():
                self._unread += len(framed)
            self._send(framed)

    def send_notification(self, message: bytes) -> None:
        """Notifications come whether or not the subscriber reads: past ``max_unread`` bytes
        held for it, the session is closed. RFC 5277 has no way to tell a subscriber that
        events were left out, so a gap in the stream is never silent; it subscribes anew."""
        if self.closed:
            return
        self.send_message(message)
        if self._unread > self.server.limits.max_unread:
            log.warning("session %d: subscriber reads no notifications (%d bytes held); "
                        "closing", self.session_id, self._unread)  # fmt: skip
            self.close(abort=True)

    def close(self, *, abort: bool = False) -> None:
        """End the session: its locks are released (RFC 6241 §7.5), the transport closed;
        aborted, it drops what it still holds for a peer that does not read."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.framer.release()
        self._account()
        for cleanup in self.on_close:
            cleanup()
        self.server.session_ended(self)
        self._wakeup.set()
        self._writable.set()
        try:
            (self._abort if abort else self._close)()
        except Exception:
            log.debug("session %d: transport close failed", self.session_id, exc_info=True)

    def connection_lost(self) -> None:
        self.close()

    def pause_writing(self) -> None:
        """The transport's write buffer is over its high-water mark: no further RPC is
        handled until it drains, so a peer that does not read its replies stalls itself
        instead of making the device hold them (RFC 6241 sets no bound)."""
        self._writable.clear()

    def resume_writing(self) -> None:
        self._unread = 0
        self._writable.set()

    def kill(self) -> None:
        """RFC 6241 §7.9: abort the operation in progress, then close. The cancellation
        reaches the RPC at its next await, before a datastore installs anything: an edit
        whose validation still runs in a thread is dropped when that thread returns."""
        if self._task is not None:
            self._task.cancel()
        self.close()

    def end(self) -> None:
        """Close now, or right after the reply to the RPC in progress (that RPC may be what
        ended the session, e.g. a factory reset: its caller still gets the answer)."""
        if self._in_rpc:
            self.close_after_reply = True
        else:
            self.close()

    async def _run(self) -> None:
        try:
            while not self.closed:
                if not self._writable.is_set():
                    await self._writable.wait()
                    continue
                try:
                    message = self.framer.next_message()
                except ZerotouchError as exc:
                    self._fail(exc)
                    break
                self._account()
                if message is None:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if not self.hello_done:
                    if not self._hello_received(message):
                        break
                    self._arm_timer(self.server.limits.idle_timeout)
                    continue
                self._in_rpc = True
                self.send_message(await self.handle_rpc(message))
                self._in_rpc = False
                self._arm_timer(self.server.limits.idle_timeout)
                if self.close_after_reply:
                    break
        except Exception:
            log.exception("session %d failed", self.session_id)
        finally:
            self.close()

    def _hello_received(self, message: bytes) -> bool:
        """RFC 6241 §8.1: a client hello with a session-id, or no base capability, ends it."""
        try:
            root = parse_xml(message)
        except InvalidInput as exc:
            log.warning("session %d: bad hello: %s", self.session_id, exc)
            return False
        if root.tag != _HELLO or root.find(f"{{{BASE_NS}}}session-id") is not None:
            log.warning("session %d: expected a client hello without session-id", self.session_id)
            return False
        caps = {
            (c.text or "").strip()
            for c in root.iterfind(f"{{{BASE_NS}}}capabilities/{{{BASE_NS}}}capability")
        }
        if BASE_11 in caps:
            self.framer.use_chunked()  # RFC 6242 §4.1
        elif BASE_10 not in caps:
            log.warning("session %d: peer has no common base capability", self.session_id)
            return False
        self.hello_done = True
        return True

    async def handle_rpc(self, message: bytes) -> bytes:
        """The framed reply body for one ``<rpc>`` message."""
        rpc: etree._Element | None = None
        try:
            rpc = parse_xml(message)
            if rpc.tag != _RPC:
                raise InvalidInput(f"expected <rpc>, got <{etree.QName(rpc).localname}>")
            if rpc.get("message-id") is None:
                raise MissingAttribute(
                    "<rpc> without message-id attribute",
                    info={"bad-attribute": "message-id", "bad-element": "rpc"},  # RFC 6241 §4.1
                )
            ops = [el for el in rpc if isinstance(el.tag, str)]
            if len(ops) != 1:
                raise InvalidInput("<rpc> must hold exactly one operation")
            handler = self.server.handler(str(ops[0].tag))
            if handler is None:
                raise UnsupportedOperation(f"operation {ops[0].tag} is not supported")
            body = await handler(self, ops[0])
            reply = _reply_start(rpc) + (body if body is not None else "<ok/>") + "</rpc-reply>"
        except ZerotouchError as exc:
            log.info("session %d: rpc error: %s", self.session_id, exc.one_line())
            keep = rpc if rpc is not None and rpc.tag == _RPC else None
            reply = _reply_start(keep) + self.server.rpc_error(exc) + "</rpc-reply>"
        except Exception as exc:
            log.exception("session %d: rpc failed", self.session_id)
            failure = ZerotouchError(f"internal error: {type(exc).__name__}")
            reply = _reply_start(rpc) + self.server.rpc_error(failure) + "</rpc-reply>"
        return reply.encode()


class NetconfServer:
    """What every session of one device shares: datastores, capabilities, session table,
    the XPath worker."""

    def __init__(
        self,
        datastores: Datastores,
        handlers: Mapping[str, RpcHandler],
        capabilities: tuple[str, ...],
        plugin_handler: Callable[[str], RpcHandler | None] = lambda _tag: None,
        limits: NetconfLimits | None = None,
    ) -> None:
        self.datastores = datastores
        self.schema = datastores.schema
        self.handlers = dict(handlers)
        self._plugin_handler = plugin_handler
        self.capabilities = capabilities
        self.sessions: dict[int, NetconfSession] = {}
        self.limits = limits or NetconfLimits()
        self.xpath = XPathWorker(self.schema, self.limits.xpath_budget)  # started when needed
        self.buffered = 0  # bytes held by the framers of every session
        self._next_id = 1
        self._namespaces = {m.name: (m.prefix, m.namespace) for m in self.schema.modules}
        caps = "".join(f"<capability>{escape(c)}</capability>" for c in capabilities)
        self._hello_head = f'<hello xmlns="{BASE_NS}"><capabilities>{caps}</capabilities>'

    def handler(self, tag: str) -> RpcHandler | None:
        """The built-in operation, else a plugin's YANG RPC (RPC name -> handler table).

        A base operation (RFC 6241 §7, the ``ietf-netconf`` RPCs) is also accepted in no
        namespace, ``<get/>`` in an ``<nc:rpc>``, as ncclient's ``dispatch`` and Ansible's
        ``netconf_rpc`` send it and as common servers accept it; no other operation is.
        """
        if not tag.startswith("{"):
            return self.handlers.get(f"{{{BASE_NS}}}{tag}")
        found = self.handlers.get(tag)
        if found is None:
            found = self._plugin_handler(tag)
            if found is not None:
                self.handlers[tag] = found
        return found

    def hello(self, session_id: int) -> bytes:
        return f"{self._hello_head}<session-id>{session_id}</session-id></hello>".encode()

    def rpc_error(self, exc: ZerotouchError) -> str:
        return rpc_error_xml(exc, self._namespaces)

    def open_session(
        self,
        info: SessionInfo,
        send: Callable[[bytes], None],
        close: Callable[[], None],
        abort: Callable[[], None] | None = None,
    ) -> NetconfSession:
        """A new session; TooManySessions when ``max_sessions`` are open (the transport
        closes the connection). ``abort`` closes without sending what is still buffered."""
        if len(self.sessions) >= self.limits.max_sessions:
            log.warning("session refused: %s user %s from %s: %d sessions open",
                        info.transport, info.username, info.peer, len(self.sessions))  # fmt: skip
            raise TooManySessions(f"{len(self.sessions)} NETCONF sessions are open")
        session_id = self._next_id
        self._next_id += 1
        session = NetconfSession(self, session_id, info, send, close, abort)
        self.sessions[session_id] = session
        log.info(
            "session %d opened: %s user %s from %s",
            session_id,
            info.transport,
            info.username,
            info.peer,
        )
        session.start()
        return session

    def check_buffered(self) -> None:
        """PayloadTooLarge when all sessions together buffer more than ``max_buffered``;
        the session whose bytes crossed the cap is the one closed."""
        if self.buffered > self.limits.max_buffered:
            raise PayloadTooLarge(
                f"NETCONF sessions buffer more than {self.limits.max_buffered} bytes"
            )

    def session_ended(self, session: NetconfSession) -> None:
        self.sessions.pop(session.session_id, None)
        self.datastores.release_session(session.session_id)
        log.info("session %d closed", session.session_id)

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close()
        self.xpath.close()

    async def close(self) -> None:
        """``close_all``, then until the XPath worker is gone."""
        self.close_all()
        await self.xpath.wait_closed()
