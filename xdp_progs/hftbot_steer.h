/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared between the XDP program (hftbot_steer.bpf.c) and its loader
 * (bridges/xdp/loader.py, which reads the HFTBOT_* constants below from this file, so the
 * two cannot disagree). Keep one constant per line: `#define NAME value` or `NAME = value,`.
 */
#ifndef HFTBOT_STEER_H
#define HFTBOT_STEER_H

#define HFTBOT_MAX_FEEDS 64      /* (group, port) entries in the feeds map */
#define HFTBOT_MAX_XSKS 64       /* AF_XDP sockets: one per RX queue or pipeline */

/* steering: which AF_XDP socket (XSKMAP key) a matched packet goes to */
#define HFTBOT_STEER_QUEUE 0     /* the socket bound to the packet's RX queue */
#define HFTBOT_STEER_SESSION 1   /* hash of the MoldUDP64 session, over n_pipelines */
#define HFTBOT_STEER_LOCATE 2    /* stock locate of the packet's first message, over n_pipelines */

/* per-reason counters (index into the per-CPU `counters` array) */
enum hftbot_counter {
	HFTBOT_CNT_RX = 0,           /* every frame the program saw */
	HFTBOT_CNT_SHORT_ETH = 1,    /* shorter than an Ethernet header */
	HFTBOT_CNT_BAD_VLAN = 2,     /* truncated 802.1Q/802.1ad tag, or more than two tags */
	HFTBOT_CNT_NOT_IPV4 = 3,     /* ARP, IPv6, ...: not IPv4 */
	HFTBOT_CNT_BAD_IP = 4,       /* truncated IPv4 header, IHL < 5, bad version/total length */
	HFTBOT_CNT_IP_FRAG = 5,      /* IPv4 fragment (feeds are never fragmented) */
	HFTBOT_CNT_NOT_UDP = 6,      /* IPv4 but not UDP */
	HFTBOT_CNT_BAD_UDP = 7,      /* truncated UDP header or length beyond the IP datagram */
	HFTBOT_CNT_NO_MATCH = 8,     /* well-formed UDP for a (group, port) not configured */
	HFTBOT_CNT_MATCHED = 9,      /* UDP for a configured feed */
	HFTBOT_CNT_MOLD_SHORT = 10,  /* matched, steering needs the Mold header, payload too short */
	HFTBOT_CNT_REDIRECTED = 11,  /* handed to an AF_XDP socket */
	HFTBOT_CNT_NO_SOCKET = 12,   /* matched but no AF_XDP socket at the target key: passed */
	HFTBOT_CNT_PASSED = 13,      /* verdict XDP_PASS (unmatched with pass, or no socket) */
	HFTBOT_CNT_DROPPED = 14,     /* verdict XDP_DROP (unmatched with drop) */
	HFTBOT_N_COUNTERS = 16,
};

/* feeds map: key = destination (group or unicast address, port), network byte order */
struct hftbot_feed_key {
	__u32 daddr;   /* IPv4 destination, network order */
	__u16 dport;   /* UDP destination port, network order */
	__u16 pad;     /* zero */
};

struct hftbot_feed_val {
	__u32 feed_id; /* index of the feed in the loader's config (informational) */
	__u32 xsk_base;/* first XSKMAP key of this feed's pipelines (session/locate steering) */
};

/* config map (one entry, key 0), written by the loader before attach */
struct hftbot_config {
	__u32 other_action; /* verdict for everything not redirected: XDP_PASS (2) or XDP_DROP (1) */
	__u32 steer;        /* HFTBOT_STEER_* */
	__u32 n_pipelines;  /* session / locate steering: sockets per feed (>= 1) */
	__u32 any_port;     /* 1: a feed entry with dport 0 matches any port of its group */
};

#endif /* HFTBOT_STEER_H */
