"""Hand-built Ethernet frames for the XDP program's tests: one per counter reason."""

from __future__ import annotations

import struct

from replay.rewind import ip_checksum, udp_frame

SRC_MAC = "02:00:00:00:00:01"
GROUP = ("239.7.7.7", 30001)
SRC = ("10.213.0.1", 40000)


def mold(seq: int = 1, count: int = 0, session: bytes = b"SESSION001", body: bytes = b"") -> bytes:
    return session + struct.pack("!QH", seq, count) + body


def feed(payload: bytes | None = None, dst=GROUP, vlan: int | None = None) -> bytes:
    return udp_frame(mold() if payload is None else payload, SRC, dst, SRC_MAC, vlan=vlan)


def _ip_fix(frame: bytes, eth: int = 14) -> bytes:
    ip = bytearray(frame[eth: eth + 20])
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", ip_checksum(bytes(ip)))
    return frame[:eth] + bytes(ip) + frame[eth + 20:]


def malformed() -> dict[str, list[bytes]]:
    """Frames by the counter they must land in (none of them is a feed packet)."""
    good = feed()
    arp = good[:12] + b"\x08\x06" + bytes(28)
    ipv6 = good[:12] + b"\x86\xdd" + bytes(40)
    short_ip = good[:14 + 10]
    bad_ver = _ip_fix(good[:14] + bytes([0x65]) + good[15:])
    bad_ihl = _ip_fix(good[:14] + bytes([0x44]) + good[15:])
    long_tot = _ip_fix(good[:16] + struct.pack("!H", 1500) + good[18:])
    frag = _ip_fix(good[:20] + struct.pack("!H", 0x2000) + good[22:])  # MF set
    frag_off = _ip_fix(good[:20] + struct.pack("!H", 0x0010) + good[22:])
    tcp = _ip_fix(good[:23] + b"\x06" + good[24:])
    udp_trunc = _ip_fix(good[:16] + struct.pack("!H", 24) + good[18:38])  # IP total 24: 4 bytes of UDP
    udp_len = good[:38] + struct.pack("!H", 4000) + good[40:]
    udp_len_small = good[:38] + struct.pack("!H", 4) + good[40:]
    vlan_trunc = good[:12] + b"\x81\x00\x00"
    three_tags = good[:12] + b"\x81\x00\x00\x05" * 3 + b"\x08\x00" + good[14:]
    other_port = feed(dst=(GROUP[0], GROUP[1] + 1))
    other_group = feed(dst=("239.7.7.8", GROUP[1]))
    return {
        "not_ipv4": [arp, ipv6],
        "bad_ip": [short_ip, bad_ver, bad_ihl, long_tot],
        "ip_frag": [frag, frag_off],
        "not_udp": [tcp],
        "bad_udp": [udp_trunc, udp_len, udp_len_small],
        "bad_vlan": [vlan_trunc, three_tags],
        "no_match": [other_port, other_group],
    }
