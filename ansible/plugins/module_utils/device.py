# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""NETCONF over TLS (RFC 7589) to one enrolled device, as the owner's NMS: ncclient's
``connect_tls`` with a client certificate of the domain CA, the device's LDevID checked
against that CA and its serialNumber against the serial the task names (RFC 8995 §2.3.1), so
that two devices behind one address are never confused.

Payloads are RFC 7951 JSON trees: the device's XML is read and written through the YANG
modules the device itself serves (``get-schema``, RFC 6022), compiled with the zerotouch
package, so values come back typed and edits are computed as the device computes them.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from ansible.module_utils.basic import env_fallback

try:
    from cryptography import x509
    from lxml import etree
    from ncclient import manager
    from ncclient.operations import RPCError
    from ncclient.transport import session as ncclient_session
    from zerotouch_plugin.artifacts.certs import serial_number_of
    from zerotouch_plugin.demo.nms import wait_ended
    from zerotouch_plugin.device.edit import Operation, apply_edit
    from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
    from zerotouch_plugin.device.xmlcodec import tree_from_xml, tree_to_xml
    from zerotouch_plugin.errors import ZerotouchError
except ImportError:
    IMPORT_ERROR: str | None = traceback.format_exc()
else:
    IMPORT_ERROR = None
    # ncclient polls its socket every 0.1 s before sending a queued request; 10 ms keeps a
    # module's handful of RPCs quick.
    ncclient_session.TICK = 0.01

T = TypeVar("T")
REQUIREMENTS = "zerotouch (with ncclient, lxml, yangson, cryptography)"
NETCONF_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
BOOTSTRAP_NS = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"
YANG_LIBRARY_CAP = "urn:ietf:params:netconf:capability:yang-library:1.0"
STARTUP_CAP = "urn:ietf:params:netconf:capability:startup:1.0"
VALIDATE_CAPS = (
    "urn:ietf:params:netconf:capability:validate:1.0",
    "urn:ietf:params:netconf:capability:validate:1.1",
)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a file name, never ".."
# How long a device gets to end the transport of a session (after close-session, or by itself
# after restart-bootstrap) before the module ends it.
END_SECONDS = 5.0

# Options of every device module (doc fragment zerotouch.brski.device).
DEVICE_ARGS: dict[str, Any] = {
    "host": {"type": "str", "required": True},
    "port": {"type": "int", "default": 6513},
    "serial": {"type": "str", "required": True},
    "client_cert": {
        "type": "path",
        "required": True,
        "fallback": (env_fallback, ["ZEROTOUCH_NMS_CERT"]),
    },
    "client_key": {
        "type": "path",
        "required": True,
        "fallback": (env_fallback, ["ZEROTOUCH_NMS_KEY"]),
    },
    "ca": {"type": "path", "required": True, "fallback": (env_fallback, ["ZEROTOUCH_CA"])},
    "tls_server_name": {"type": "str"},
    "timeout": {"type": "float", "default": 30.0},
    "yang_cache": {
        "type": "path",
        "default": "~/.cache/zerotouch-ansible/yang",
        "fallback": (env_fallback, ["ZEROTOUCH_YANG_CACHE"]),
    },
}


class DeviceError(Exception):
    """The device could not be reached, is not the one named, or refused a request."""


class Device:
    """One NETCONF/TLS session to the device named by ``params`` (a module's parameters)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.where = f"{params['host']}:{params['port']}"
        self.session: Any = None
        self._schema: DeviceSchema | None = None
        # After restart-bootstrap the device forgets the identity this session rests on and
        # may not answer a close-session any more.
        self.restarted = False

    def __enter__(self) -> Device:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Open the session and check that the peer is the device ``serial`` names."""
        p = self.params
        name = p.get("tls_server_name")
        try:
            self.session = manager.connect_tls(
                host=p["host"],
                port=p["port"],
                certfile=p["client_cert"],
                keyfile=p["client_key"],
                ca_certs=p["ca"],
                protocol=ssl.PROTOCOL_TLS_CLIENT,
                # An LDevID names the device by serialNumber; its DNS name is checked when
                # the inventory gives one, the serial always (below).
                check_hostname=bool(name),
                server_hostname=name or None,
                timeout=p["timeout"],
            )
        except Exception as exc:  # ncclient raises unrelated types for TLS and socket faults
            raise DeviceError(
                f"NETCONF/TLS to {self.where} failed: {exc} (is the device enrolled, does its "
                "LDevID chain to the given CA, and does the CA's domain accept the client "
                "certificate?)"
            ) from exc
        der = self.session._session._socket.getpeercert(binary_form=True)
        found = serial_number_of(x509.load_der_x509_certificate(der)) if der else None
        if found != p["serial"]:
            self.close()
            raise DeviceError(
                f"the device at {self.where} presents serial {found}, not {p['serial']}: "
                "refusing to manage it"
            )

    def close(self) -> None:
        """End the session so that only ncclient's reader thread closes its socket: the device
        ends the transport after ``close-session`` (RFC 6241 §7.8), or by itself after
        ``restart-bootstrap`` (it forgot the identity the session rests on), and the reader
        sees the end. ncclient's own close closes the socket from this thread while the reader
        may be inside OpenSSL's read of it: the next connection this process opens (HTTPS to
        the registrar, a new session) gets the same descriptor, and the late read takes bytes
        of that TLS stream (bad record MAC). A device that does not end the transport within
        END_SECONDS has the socket shut down under the reader, which then closes it."""
        session, self.session = self.session, None
        if session is None:
            return
        if not self.restarted:
            with contextlib.suppress(Exception):  # the device may already have ended it
                session.dispatch("close-session")
        if wait_ended(session, END_SECONDS):
            return
        # Shut down, not closed: the descriptor stays the reader's until it closes it.
        with contextlib.suppress(OSError):  # the reader closed it meanwhile
            socket.socket.shutdown(session._session._socket, socket.SHUT_RDWR)
        wait_ended(session, END_SECONDS)

    # -- schema -------------------------------------------------------------------------------

    def advertised(self) -> tuple[str, dict[str, tuple[str, tuple[str, ...]]]]:
        """(module-set id, {module: (revision, features)}) from the hello (RFC 7950 §5.6.4)."""
        modules: dict[str, tuple[str, tuple[str, ...]]] = {}
        set_id = ""
        for cap in self.session.server_capabilities:
            base, _, query = cap.partition("?")
            args = parse_qs(query)
            if base == YANG_LIBRARY_CAP:
                set_id = args.get("module-set-id", [""])[0]
            elif "module" in args:
                features = (
                    tuple(args.get("features", [""])[0].split(",")) if "features" in args else ()
                )
                modules[args["module"][0]] = (
                    args.get("revision", [""])[0],
                    tuple(f for f in features if f),
                )
        return set_id, modules

    def schema(self) -> DeviceSchema:
        """The device's YANG schema, its modules fetched once per module set (cached)."""
        if self._schema is not None:
            return self._schema
        set_id, modules = self.advertised()
        if set_id and not SAFE_NAME.match(set_id):
            raise DeviceError(f"the device at {self.where} advertises a bad module-set-id")
        folder = Path(os.path.expanduser(self.params["yang_cache"])) / (set_id or "unnamed")
        folder.mkdir(parents=True, exist_ok=True)
        for name, (revision, _) in modules.items():
            if not SAFE_NAME.match(name) or (revision and not SAFE_NAME.match(revision)):
                raise DeviceError(f"the device at {self.where} advertises a bad module {name!r}")
            path = folder / f"{name}@{revision}.yang" if revision else folder / f"{name}.yang"
            if set_id and path.exists():
                continue
            try:
                text = self.session.get_schema(name, version=revision or None).data
            except RPCError:
                continue  # not served: the zerotouch package's copy is used
            # Several module runs (one per device) may fetch the same module at once: each
            # writes a file of its own and renames it into place.
            fd, part = tempfile.mkstemp(dir=folder, suffix=".part")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(part, path)
        try:
            self._schema = load_device_schema(
                extra_dirs=[folder],
                extra_modules=[(n, r) for n, (r, _) in modules.items()],
                features={n: f for n, (_, f) in modules.items()},
            )
        except ZerotouchError as exc:
            raise DeviceError(f"the YANG modules of {self.where} do not compile: {exc}") from exc
        return self._schema

    # -- data ---------------------------------------------------------------------------------

    def tree_of(self, reply: Any) -> dict[str, Any]:
        """The ``<data>`` of a reply as an RFC 7951 tree."""
        return dict(tree_from_xml(self.schema(), list(reply.data_ele)))

    def get_config(self, source: str = "running", xml_filter: Any = None) -> dict[str, Any]:
        """The configuration of ``source`` (``running``, ``startup``) as an RFC 7951 tree."""
        reply = self.rpc(lambda s: s.get_config(source, filter=xml_filter))
        return self.checked(lambda: self.tree_of(reply))

    def get(self, xml_filter: Any = None) -> tuple[dict[str, Any], str]:
        """Configuration and state (``<get>``): the RFC 7951 tree and the data as XML."""
        reply = self.rpc(lambda s: s.get(filter=xml_filter))
        return self.checked(lambda: self.tree_of(reply)), reply.data_xml

    def to_xml(self, tree: dict[str, Any], operation: str | None = None) -> Any:
        """``<config>`` holding ``tree``; ``operation`` on each top-level element."""
        text = tree_to_xml(self.schema(), tree)
        config = etree.fromstring(f'<config xmlns="{NETCONF_NS}">{text}</config>')
        if operation is not None:
            for element in config:
                element.set(f"{{{NETCONF_NS}}}operation", operation)
        return config

    def from_xml(self, text: str) -> dict[str, Any]:
        """An XML configuration (top-level elements, optionally inside ``<config>`` or
        ``<data>``) as an RFC 7951 tree."""
        parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
        try:
            root = etree.fromstring(f"<wrapper>{text}</wrapper>".encode(), parser)
        except etree.XMLSyntaxError as exc:
            raise DeviceError(f"the XML configuration is not well-formed: {exc}") from exc
        elements = [e for e in root if isinstance(e.tag, str)]
        if len(elements) == 1 and etree.QName(elements[0]).localname in ("config", "data"):
            elements = [e for e in elements[0] if isinstance(e.tag, str)]
        return self.checked(lambda: tree_from_xml(self.schema(), elements))

    def merged(
        self, current: dict[str, Any], edit: dict[str, Any], operation: str
    ) -> dict[str, Any]:
        """``current`` after the edit, as the device's edit engine computes it (RFC 6241 §7.2)."""
        return self.checked(
            lambda: dict(
                apply_edit(self.schema(), current, edit, default_operation=Operation(operation))
            )
        )

    def checked(self, work: Callable[[], T]) -> T:
        """``work()``, its schema errors reported as DeviceError with the path."""
        try:
            return work()
        except ZerotouchError as exc:
            raise DeviceError(f"{exc} (against the YANG modules of {self.where})") from exc

    def rpc(self, call: Any) -> Any:
        """``call(session)``; the device's rpc-error as DeviceError (tag, path, message)."""
        try:
            return call(self.session)
        except RPCError as exc:
            raise DeviceError(
                f"{self.where} answered rpc-error {exc.tag}: {exc.message or exc} "
                f"(at {exc.path or '/'})"
            ) from exc

    def has_startup(self) -> bool:
        return STARTUP_CAP in self.session.server_capabilities

    def validate(self, tree: dict[str, Any]) -> str:
        """Check that ``tree`` is a configuration the device accepts, changing nothing:
        ``<validate>`` of it inline (RFC 6241 §8.6) where the device offers ``:validate``,
        else against its YANG modules here. Says which."""
        caps = self.session.server_capabilities
        if any(cap in caps for cap in VALIDATE_CAPS):
            self.rpc(lambda s: s.validate(source=self.to_xml(tree)))
            return "device"
        self.checked(lambda: self.schema().validate(tree))
        return "schema"

    def bootstrap(self) -> dict[str, Any]:
        """The ``zerotouch-bootstrap`` state (phase, LDevID, voucher, events)."""
        filt = ("subtree", f'<bootstrap xmlns="{BOOTSTRAP_NS}"/>')
        tree, _ = self.get(filt)
        return dict(tree.get("zerotouch-bootstrap:bootstrap") or {})

    def restart_bootstrap(self, factory_reset: bool) -> str | None:
        """The ``restart-bootstrap`` RPC; the phase it answered with."""
        value = "true" if factory_reset else "false"
        request = etree.fromstring(
            f'<restart-bootstrap xmlns="{BOOTSTRAP_NS}"><factory-reset>{value}</factory-reset>'
            "</restart-bootstrap>"
        )
        reply = self.rpc(lambda s: s.dispatch(request))
        self.restarted = True
        phase = etree.fromstring(reply.xml.encode()).find(f".//{{{BOOTSTRAP_NS}}}phase")
        return None if phase is None else phase.text
