#!/usr/bin/env python3
"""Writes the recorded-packet cases in this directory (`*.hex`).

Each case is a sequence of Ethernet frames, one per line as hex, that the sensor's matcher reads
in order (sensor/tests/packets.rs) with 10.0.0.53 and fd00::53 as the trusted resolvers and
port 53; the findings are an insta snapshot. Lines starting with `#` say what the next frame is.
The frames are built here byte by byte, so the malformed ones are malformed exactly where
intended. Run `python3 testcases/dns/generate.py` after changing it; the output is committed.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT, RESOLVER, FORGER = "10.0.0.7", "10.0.0.53", "10.0.0.66"
CLIENT6, RESOLVER6 = "fd00::7", "fd00::53"


def ip4(text):
    return bytes(int(p) for p in text.split("."))


def ip6(text):
    head, _, tail = text.partition("::")
    h = [int(x, 16) for x in head.split(":") if x]
    t = [int(x, 16) for x in tail.split(":") if x]
    words = h + [0] * (8 - len(h) - len(t)) + t
    return b"".join(struct.pack("!H", w) for w in words)


def name(text):
    out = b""
    for label in text.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns(id_, qname, qtype=1, response=False, rcode=0, tc=False, answers=(), raw_question=None):
    flags = 0x0100  # RD
    if response:
        flags |= 0x8080  # QR, RA
    if tc:
        flags |= 0x0200
    flags |= rcode
    question = raw_question if raw_question is not None else name(qname) + struct.pack("!HH", qtype, 1)
    body = b"".join(answers)
    return struct.pack("!HHHHHH", id_, flags, 1, len(answers), 0, 0) + question + body


def rr(owner, rtype, ttl, rdata):
    return name(owner) + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def a(owner, addr, ttl=300):
    return rr(owner, 1, ttl, ip4(addr))


def aaaa(owner, addr, ttl=300):
    return rr(owner, 28, ttl, ip6(addr))


def cname(owner, target, ttl=300):
    return rr(owner, 5, ttl, name(target))


def udp(src, dst, sport, dport, payload, v6=False, vlan=False, frag_offset=0, udp_len=None):
    length = udp_len if udp_len is not None else 8 + len(payload)
    segment = struct.pack("!HHHH", sport, dport, length, 0) + payload
    return ip(src, dst, 17, segment, v6, vlan, frag_offset)


def tcp(src, dst, sport, dport, seq, payload):
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0)
    return ip(src, dst, 6, header + payload)


def ip(src, dst, proto, segment, v6=False, vlan=False, frag_offset=0):
    if v6:
        packet = struct.pack("!IHBB", 6 << 28, len(segment), proto, 64) + ip6(src) + ip6(dst) + segment
        ethertype = 0x86DD
    else:
        packet = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(segment), 1, frag_offset, 64, proto, 0)
        packet += ip4(src) + ip4(dst) + segment
        ethertype = 0x0800
    eth = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02"
    if vlan:
        eth += struct.pack("!HH", 0x8100, 42)
    return eth + struct.pack("!H", ethertype) + packet


def query(id_, qname, qtype=1, sport=40000, **kw):
    return udp(CLIENT, RESOLVER, sport, 53, dns(id_, qname, qtype), **kw)


def answer(id_, qname, answers, qtype=1, sport=40000, src=RESOLVER, **kw):
    return udp(src, CLIENT, 53, sport, dns(id_, qname, qtype, response=True, answers=answers), **kw)


CASES = {
    "a-record": [
        ("query api.example.test A", query(1, "api.example.test")),
        ("answer with two addresses", answer(1, "api.example.test", [a("api.example.test", "192.0.2.1", 60), a("api.example.test", "192.0.2.2", 30)])),
    ],
    "aaaa-over-ipv6-with-vlan": [
        ("query over IPv6 in a VLAN", udp(CLIENT6, RESOLVER6, 40001, 53, dns(2, "v6.example.test", 28), v6=True, vlan=True)),
        ("answer", udp(RESOLVER6, CLIENT6, 53, 40001, dns(2, "v6.example.test", 28, response=True, answers=[aaaa("v6.example.test", "2001:db8::1")]), v6=True, vlan=True)),
    ],
    "cname-chain": [
        ("query www.example.test", query(3, "www.example.test")),
        ("answer through two CNAMEs, plus an unrelated A record that must be ignored", answer(3, "www.example.test", [
            cname("www.example.test", "edge.cdn.test", 600),
            cname("edge.cdn.test", "pop.cdn.test", 20),
            a("pop.cdn.test", "198.51.100.9", 300),
            a("evil.test", "203.0.113.1", 300),
        ])),
    ],
    "spoofing": [
        ("query", query(4, "bank.example.test")),
        ("forged answer from a host that is not a resolver", answer(4, "bank.example.test", [a("bank.example.test", "203.0.113.66")], src=FORGER)),
        ("answer with the wrong transaction id", answer(5, "bank.example.test", [a("bank.example.test", "203.0.113.66")])),
        ("answer to another client port", answer(4, "bank.example.test", [a("bank.example.test", "203.0.113.66")], sport=40099)),
        ("answer for another question", answer(4, "other.example.test", [a("other.example.test", "203.0.113.66")])),
        ("the real answer", answer(4, "bank.example.test", [a("bank.example.test", "192.0.2.44")])),
        ("the real answer again (a second interface)", answer(4, "bank.example.test", [a("bank.example.test", "192.0.2.44")])),
        ("a query (QR=0) from the resolver is not an answer", udp(RESOLVER, CLIENT, 53, 40000, dns(4, "bank.example.test"))),
    ],
    "errors-and-truncation": [
        ("query", query(6, "gone.example.test")),
        ("NXDOMAIN", udp(RESOLVER, CLIENT, 53, 40000, dns(6, "gone.example.test", response=True, rcode=3))),
        ("query", query(7, "broken.example.test")),
        ("SERVFAIL", udp(RESOLVER, CLIENT, 53, 40000, dns(7, "broken.example.test", response=True, rcode=2))),
        ("query", query(8, "big.example.test")),
        ("TC set: the client retries over TCP", udp(RESOLVER, CLIENT, 53, 40000, dns(8, "big.example.test", response=True, tc=True))),
        ("query", query(9, "empty.example.test")),
        ("NOERROR without addresses", answer(9, "empty.example.test", [])),
        ("query for TXT", query(10, "txt.example.test", qtype=16)),
    ],
    "malformed": [
        ("query", query(11, "loop.example.test")),
        ("compression pointer to itself", udp(RESOLVER, CLIENT, 53, 40000, dns(11, "", response=True, raw_question=b"\xc0\x0c" + struct.pack("!HH", 1, 1)))),
        ("label length past the end", udp(RESOLVER, CLIENT, 53, 40000, dns(11, "", response=True, raw_question=b"\x3fab"))),
        ("reserved label type 0x80", udp(RESOLVER, CLIENT, 53, 40000, dns(11, "", response=True, raw_question=b"\x80abc\x00" + struct.pack("!HH", 1, 1)))),
        ("DNS header cut at 5 bytes", udp(RESOLVER, CLIENT, 53, 40000, b"\x00\x0b\x81\x80\x00")),
        ("IPv4 header cut short", query(12, "x.example.test")[:14 + 12]),
        ("UDP length longer than the packet", udp(RESOLVER, CLIENT, 53, 40000, dns(11, "loop.example.test", response=True), udp_len=400)),
        ("UDP length shorter than its header", udp(RESOLVER, CLIENT, 53, 40000, b"", udp_len=3)),
        ("non-first IPv4 fragment", udp(RESOLVER, CLIENT, 53, 40000, b"\0" * 16, frag_offset=0x20)),
        ("ARP", b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x08\x06" + b"\0" * 28),
        ("empty frame", b""),
    ],
    "tcp-split": [
        ("TCP query: the length prefix alone", tcp(CLIENT, RESOLVER, 40100, 53, 1000, struct.pack("!H", len(dns(13, "tcp.example.test"))))),
        ("TCP query: the message", tcp(CLIENT, RESOLVER, 40100, 53, 1002, dns(13, "tcp.example.test"))),
        ("TCP answer in one segment", tcp(RESOLVER, CLIENT, 53, 40100, 5000, (lambda m: struct.pack("!H", len(m)) + m)(dns(13, "tcp.example.test", response=True, answers=[a("tcp.example.test", "192.0.2.77")])))),
        ("a segment after a gap", tcp(RESOLVER, CLIENT, 53, 40100, 9000, b"\x00\x20" + b"\0" * 10)),
    ],
}


def main():
    for case, frames in CASES.items():
        lines = [f"# {case}: generated by generate.py; do not edit"]
        for comment, frame in frames:
            lines.append(f"# {comment}")
            lines.append(frame.hex())
        with open(os.path.join(HERE, f"{case}.hex"), "w") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
