"""A multicast DNS responder for tests (RFC 6762), run inside a network namespace:
``python -m tests.support.mdns_responder IFACE RECORDS.json``.

It joins ff02::fb on IFACE, listens on port 5353 and answers each question it holds records
for: a query from a port other than 5353 (a one-shot query, §5.1) by unicast to its source,
echoing the ID and the question, with TTLs of at most 10 s (§6.7); one from port 5353 to
the group; the address records of SRV targets go along in the additional section (RFC 6763
§12.2). RECORDS.json is a list of ``[name, type, rdata hex]``. It prints ``ready`` once
it listens, then one line per question: ``answered NAME TYPE`` or ``unanswered NAME TYPE``.
"""

from __future__ import annotations

import json
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

GROUP, PORT, LEGACY_TTL = "ff02::fb", 5353, 10


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


def serve(interface: str, rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset]) -> None:
    index = socket.if_nametoindex(interface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::", PORT))
    membership = socket.inet_pton(socket.AF_INET6, GROUP) + struct.pack("@I", index)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    print("ready", flush=True)
    while True:
        packet, source = sock.recvfrom(9000)
        try:
            query = dns.message.from_wire(packet)
        except dns.exception.DNSException:
            continue
        if query.flags & dns.flags.QR:
            continue
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            rrset = rrsets.get((question.name, question.rdtype))
            kind = dns.rdatatype.to_text(question.rdtype)
            print(f"{'answered' if rrset else 'unanswered'} {question.name} {kind}", flush=True)
            if rrset is not None:
                response.answer.append(rrset)
                for rdata in rrset if rrset.rdtype == dns.rdatatype.SRV else ():
                    for kind in (dns.rdatatype.AAAA, dns.rdatatype.A):
                        if (found := rrsets.get((rdata.target, kind))) is not None:
                            response.additional.append(found)
        if not response.answer:
            continue
        if source[1] == PORT:
            response.id = 0  # RFC 6762 §18.1
            response.question = []
            sock.sendto(response.to_wire(), (GROUP, PORT, 0, index))
        else:
            sock.sendto(response.to_wire(), source)


if __name__ == "__main__":
    serve(sys.argv[1], load(Path(sys.argv[2])))
