"""A multicast DNS responder for tests (RFC 6762), run inside a network namespace:
``python -m tests.support.mdns_responder IFACE RECORDS.json``.

It joins ff02::fb and 224.0.0.251 on IFACE (the families it has), listens on port 5353 and
answers each question it holds records for: a query from a port other than 5353 (a one-shot
query, §5.1) by unicast to its source, echoing the ID and the question, with TTLs of at
most 10 s (§6.7); one from port 5353 to the group; the address records of SRV targets go
along in the additional section (RFC 6763 §12.2). RECORDS.json is a list of ``[name, type,
rdata hex]``. It prints ``ready`` once it listens, then one line per question: ``answered
NAME TYPE from ADDRESS`` or ``unanswered NAME TYPE from ADDRESS``.
"""

from __future__ import annotations

import json
import selectors
import socket
import struct
import sys
from collections import defaultdict
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.wire

GROUP, GROUP4, PORT, LEGACY_TTL = "ff02::fb", "224.0.0.251", 5353, 10


def load(path: Path) -> dict[tuple[dns.name.Name, int], dns.rrset.RRset]:
    """The records of RECORDS.json, one RRset per name and type."""
    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    grouped: dict[tuple[dns.name.Name, int], list[bytes]] = defaultdict(list)
    for name, kind, hexdata in json.loads(path.read_text()):
        grouped[(dns.name.from_text(name), dns.rdatatype.from_text(kind))].append(
            bytes.fromhex(hexdata)
        )
    for (name, rdtype), wires in grouped.items():
        rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
        for wire in wires:
            parser = dns.wire.Parser(wire)
            rrset.add(dns.rdata.from_wire_parser(dns.rdataclass.IN, rdtype, parser), LEGACY_TTL)
        rrsets[(name, rdtype)] = rrset
    return rrsets


def _sockets(interface: str, index: int) -> dict[socket.socket, tuple[object, ...]]:
    """Port 5353 sockets in the groups on the interface: IPv6 and IPv4 where the interface
    has them; each socket's group address."""
    found: dict[socket.socket, tuple[object, ...]] = {}
    six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        six.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        six.bind(("::", PORT))
        membership = socket.inet_pton(socket.AF_INET6, GROUP) + struct.pack("@I", index)
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        found[six] = (GROUP, PORT, 0, index)
    except OSError:
        six.close()
    four = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        four.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        four.bind(("0.0.0.0", PORT))
        request = struct.pack("4s4si", socket.inet_aton(GROUP4), socket.inet_aton("0.0.0.0"), index)
        four.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
        four.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        found[four] = (GROUP4, PORT)
    except OSError:
        four.close()
    return found


def _answer(
    packet: bytes, rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset], source: str
) -> dns.message.Message | None:
    """The response to a query, or None (no query, or nothing to answer)."""
    try:
        query = dns.message.from_wire(packet)
    except dns.exception.DNSException:
        return None
    if query.flags & dns.flags.QR:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    for question in query.question:
        rrset = rrsets.get((question.name, question.rdtype))
        kind = dns.rdatatype.to_text(question.rdtype)
        said = "answered" if rrset else "unanswered"
        print(f"{said} {question.name} {kind} from {source}", flush=True)
        if rrset is not None:
            response.answer.append(rrset)
            for rdata in rrset if rrset.rdtype == dns.rdatatype.SRV else ():
                for address in (dns.rdatatype.AAAA, dns.rdatatype.A):
                    if (found := rrsets.get((rdata.target, address))) is not None:
                        response.additional.append(found)
    return response if response.answer else None


def serve(interface: str, rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset]) -> None:
    sockets = _sockets(interface, socket.if_nametoindex(interface))
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        print("ready", flush=True)
        while True:
            for key, _ in selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                packet, source = sock.recvfrom(9000)
                response = _answer(packet, rrsets, source[0])
                if response is None:
                    continue
                if source[1] == PORT:
                    response.id = 0  # RFC 6762 §18.1
                    response.question = []
                    sock.sendto(response.to_wire(), sockets[sock])
                else:
                    sock.sendto(response.to_wire(), source)


if __name__ == "__main__":
    serve(sys.argv[1], load(Path(sys.argv[2])))
