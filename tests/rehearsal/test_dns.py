"""The rehearsal's DNS server, on bytes: a query in, the answer a resolver expects out."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from courseredis.rehearsal.dns import (
    NXDOMAIN,
    TYPE_A,
    TYPE_AAAA,
    RecordsFile,
    answer,
    write_records,
)


def query(name: str, qtype: int = TYPE_A, ident: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def addresses(response: bytes, question_length: int) -> list[str]:
    count = struct.unpack("!H", response[6:8])[0]
    offset = 12 + question_length
    found = []
    for _ in range(count):
        rdlength = struct.unpack("!H", response[offset + 10 : offset + 12])[0]
        found.append(socket.inet_ntoa(response[offset + 12 : offset + 12 + rdlength]))
        offset += 12 + rdlength
    return found


RECORDS = {"redis.ns.svc.cluster.local": ["10.0.0.2", "10.0.0.3"], "empty.ns.svc.cluster.local": []}


def test_a_service_name_answers_with_its_ready_pods():
    message = query("Redis.ns.svc.cluster.local")  # names are case-insensitive
    response = answer(message, RECORDS)
    assert response[:2] == b"\x12\x34" and response[3] & 0xF == 0
    assert sorted(addresses(response, len(message) - 12)) == ["10.0.0.2", "10.0.0.3"]


def test_unknown_names_get_nxdomain_so_nothing_leaves_the_network():
    response = answer(query("pypi.org"), RECORDS)
    assert response[3] & 0xF == NXDOMAIN
    # A search-list expansion of a known name's prefix is unknown too.
    assert answer(query("redis.ns.svc.cluster.local.cluster.local"), RECORDS)[3] & 0xF == NXDOMAIN


def test_other_types_and_unready_services_get_no_data_not_an_error():
    for message in (
        query("redis.ns.svc.cluster.local", TYPE_AAAA),
        query("empty.ns.svc.cluster.local"),
    ):
        response = answer(message, RECORDS)
        assert response[3] & 0xF == 0 and struct.unpack("!H", response[6:8])[0] == 0


def test_garbage_gets_formerr():
    assert answer(b"\x00\x01\x02", RECORDS)[3] & 0xF == 1


def test_the_records_file_is_replaced_whole_and_reread(tmp_path: Path):
    path = tmp_path / "records.json"
    write_records(path, {"a.cluster.local": ["10.0.0.9"]})
    source = RecordsFile(path)
    assert source.current() == {"a.cluster.local": ["10.0.0.9"]}
    write_records(path, {"b.cluster.local": []})
    os.utime(path, (1, 1))  # a new mtime even within the clock's resolution
    assert source.current() == {"b.cluster.local": []}
    assert [p.name for p in tmp_path.iterdir()] == ["records.json"]
