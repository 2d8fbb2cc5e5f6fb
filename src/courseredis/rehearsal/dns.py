"""The rehearsal's cluster DNS: A records from a JSON file the controller rewrites.

It runs in a container on the rehearsal's network (`python -m courseredis.rehearsal.dns`),
and every pod's resolv.conf names it, with the namespace's search list and `ndots:5` as
the kubelet writes them. The controller writes `{name: [ip, ...]}` (a Service lists its
ready pods, a StatefulSet pod its own IP) and renames the file into place; the server
re-reads it when its mtime changes. Names outside the file get NXDOMAIN: the rehearsal's
traffic never leaves its network through DNS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
TTL_SECONDS = 1  # readiness changes must show at once, as kube-dns' short TTLs do
NOERROR, FORMERR, NXDOMAIN, NOTIMP = 0, 1, 3, 4


def parse_question(message: bytes) -> tuple[int, int, str, int, int, int]:
    """(id, flags, name, qtype, qclass, end offset of the question)."""
    if len(message) < 12:
        raise ValueError("short message")
    ident, flags, questions = struct.unpack("!HHH", message[:6])
    if questions != 1:
        raise ValueError("one question expected")
    labels: list[str] = []
    offset = 12
    while True:
        length = message[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed question")
        labels.append(message[offset : offset + length].decode("ascii", "replace"))
        offset += length
    qtype, qclass = struct.unpack("!HH", message[offset : offset + 4])
    return ident, flags, ".".join(labels).lower(), qtype, qclass, offset + 4


def answer(message: bytes, records: Mapping[str, Sequence[str]]) -> bytes:
    """The response to one query: A records of a known name (shuffled, as a Service's
    endpoints are spread), no data for other types of a known name, NXDOMAIN otherwise."""
    try:
        ident, flags, name, qtype, qclass, end = parse_question(message)
    except (ValueError, IndexError, struct.error):
        ident = struct.unpack("!H", message[:2])[0] if len(message) >= 2 else 0
        return struct.pack("!HHHHHH", ident, 0x8000 | FORMERR, 0, 0, 0, 0)
    question = message[12:end]
    recursion_desired = flags & 0x0100
    opcode = (flags >> 11) & 0xF
    base = 0x8000 | 0x0400 | recursion_desired  # response, authoritative
    if opcode != 0:
        return struct.pack("!HHHHHH", ident, base | NOTIMP, 1, 0, 0, 0) + question
    addresses = list(records.get(name.rstrip("."), ()))
    known = name.rstrip(".") in records
    if not known:
        return struct.pack("!HHHHHH", ident, base | NXDOMAIN, 1, 0, 0, 0) + question
    if qtype != TYPE_A or qclass != CLASS_IN:
        return struct.pack("!HHHHHH", ident, base | NOERROR, 1, 0, 0, 0) + question
    random.shuffle(addresses)
    body = b""
    for address in addresses:
        body += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL_SECONDS, 4)
        body += socket.inet_aton(address)
    header = struct.pack("!HHHHHH", ident, base | NOERROR, 1, len(addresses), 0, 0)
    return header + question + body


def write_records(path: Path, records: Mapping[str, Sequence[str]]) -> None:
    """Replace the records file atomically (the server never reads half a file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_text(json.dumps({k: sorted(v) for k, v in sorted(records.items())}))
    os.replace(temporary, path)


class RecordsFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime = -1.0
        self.records: dict[str, list[str]] = {}

    def current(self) -> dict[str, list[str]]:
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self.mtime:
                self.records = json.loads(self.path.read_text())
                self.mtime = mtime
        except (OSError, ValueError):
            pass  # keep the last good records
        return self.records


def serve(bind: str, port: int, records_path: Path) -> None:
    source = RecordsFile(records_path)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((bind, port))
    while True:
        message, peer = udp.recvfrom(4096)
        udp.sendto(answer(message, source.current()), peer)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m courseredis.rehearsal.dns")
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=53)
    options = parser.parse_args(argv)
    serve(options.bind, options.port, options.records)


if __name__ == "__main__":
    main()
