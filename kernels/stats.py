"""Counter slots shared by every framing and decode kernel.

Kernels add into one int64 array ``stats`` of length ``N_STATS``; slots 0..255 count decoded
messages by type byte, the named slots below count packets, bytes and problems by reason. The
names are what reports print. Plain module-level ints, so compiled code sees them as constants.
"""

from __future__ import annotations

import numpy as np

TYPE_BASE = 0  # stats[TYPE_BASE + ord(type)] = messages of that type decoded

# capture layer (pcap / pcapng / Ethernet / IPv4 / UDP)
PACKETS = 256            # capture records read
UDP_ACCEPTED = 257       # UDP payloads that matched the feed filter
FILTERED = 258           # well-formed packets for another address/port or protocol (not errors)
NON_IPV4 = 259           # not IPv4 (ARP, IPv6, ...): skipped
IP_FRAGMENT = 260        # IPv4 fragments (no reassembly): skipped
BAD_IP = 261             # IPv4 header malformed or truncated
BAD_UDP = 262            # UDP header malformed or length disagrees with IP
SNAP_TRUNCATED = 263     # captured length shorter than the datagram (snaplen): skipped
BAD_LINKTYPE = 264       # link type we cannot parse
BAD_RECORD = 265         # corrupt capture record header (reading stops)
TRAILING_BYTES = 266     # bytes after the last complete record / message of a file
PCAPNG_BLOCKS_SKIPPED = 267  # pcapng blocks that carry no packets (stats, names, custom)
# MoldUDP64
MOLD_PACKETS = 270
MOLD_HEARTBEATS = 271
MOLD_END_OF_SESSION = 272
MOLD_SHORT = 273          # payload shorter than the 20-byte header
MOLD_TRUNCATED = 274      # a message block runs past the end of the payload
MOLD_TRAILING = 275       # bytes after the declared message count
MOLD_GAP_MESSAGES = 276   # messages missing between expected and received sequence numbers
MOLD_GAPS = 277           # gap events
MOLD_DUP_MESSAGES = 278   # messages already seen (dropped)
MOLD_UNSEQUENCED = 279    # packets with sequence number 0 (scrubbed captures): no gap checks
MOLD_TOO_MANY_SESSIONS = 280
MOLD_EMPTY_MESSAGE = 281  # zero-length message block
MOLD_BAD_SEQUENCE = 282   # sequence number >= 2**62: corrupt header, packet skipped
# ITCH
MESSAGES_IN = 290         # message blocks handed to decode
DECODED = 291
UNKNOWN_TYPE = 292
BAD_LENGTH = 293          # length disagrees with the type's fixed length
# BinaryFILE
END_OF_SESSION = 295      # zero-length record seen
AFTER_END_OF_SESSION = 296  # bytes after the end-of-session record (garbage)

N_STATS = 320

#: reason slots that are problems with the input (reported as "malformed/skipped")
PROBLEMS = {
    "non_ipv4": NON_IPV4,
    "ip_fragment": IP_FRAGMENT,
    "bad_ip_header": BAD_IP,
    "bad_udp_header": BAD_UDP,
    "snaplen_truncated": SNAP_TRUNCATED,
    "unsupported_linktype": BAD_LINKTYPE,
    "corrupt_capture_record": BAD_RECORD,
    "trailing_bytes": TRAILING_BYTES,
    "mold_short_header": MOLD_SHORT,
    "mold_truncated_block": MOLD_TRUNCATED,
    "mold_trailing_bytes": MOLD_TRAILING,
    "mold_too_many_sessions": MOLD_TOO_MANY_SESSIONS,
    "empty_message": MOLD_EMPTY_MESSAGE,
    "mold_bad_sequence": MOLD_BAD_SEQUENCE,
    "unknown_type": UNKNOWN_TYPE,
    "bad_length": BAD_LENGTH,
    "bytes_after_end_of_session": AFTER_END_OF_SESSION,
}

#: informational slots
INFO = {
    "packets": PACKETS,
    "udp_accepted": UDP_ACCEPTED,
    "filtered": FILTERED,
    "pcapng_blocks_skipped": PCAPNG_BLOCKS_SKIPPED,
    "mold_packets": MOLD_PACKETS,
    "mold_heartbeats": MOLD_HEARTBEATS,
    "mold_end_of_session": MOLD_END_OF_SESSION,
    "mold_unsequenced_packets": MOLD_UNSEQUENCED,
    "gaps": MOLD_GAPS,
    "gap_messages": MOLD_GAP_MESSAGES,
    "duplicate_messages": MOLD_DUP_MESSAGES,
    "messages_in": MESSAGES_IN,
    "decoded": DECODED,
    "end_of_session": END_OF_SESSION,
}


def new_stats() -> np.ndarray:
    return np.zeros(N_STATS, dtype=np.int64)
