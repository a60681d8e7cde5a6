// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * hftbot_steer: steer market-data multicast (MoldUDP64 over UDP/IPv4, optionally 802.1Q
 * tagged) to AF_XDP sockets; pass or drop everything else.
 *
 * Maps (filled by bridges/xdp/loader.py):
 *   feeds    hash   (daddr, dport) -> feed        configured feeds (group, port)
 *   xsks     xskmap key -> AF_XDP socket            one per RX queue (or per pipeline)
 *   config   array  [0] -> struct hftbot_config     verdict for the rest, steering mode
 *   counters percpu array [HFTBOT_N_COUNTERS]       per-reason counters (summed by the loader)
 *
 * Every read of packet bytes is preceded by a bounds check against data_end: the verifier
 * rejects the program otherwise.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "hftbot_steer.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HFTBOT_MAX_FEEDS);
	__type(key, struct hftbot_feed_key);
	__type(value, struct hftbot_feed_val);
} feeds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, HFTBOT_MAX_XSKS);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hftbot_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HFTBOT_N_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

static __always_inline void count(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &reason);

	/* the verifier needs the NULL check even though the index is always in range */
	if (c)
		*c += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline int other(const struct hftbot_config *cfg, __u32 reason)
{
	count(reason);
	if (cfg && cfg->other_action == XDP_DROP) {
		count(HFTBOT_CNT_DROPPED);
		return XDP_DROP;
	}
	count(HFTBOT_CNT_PASSED);
	return XDP_PASS;
}

/* FNV-1a over the 10-byte MoldUDP64 session; `s` was bounds-checked by the caller. */
static __always_inline __u32 session_hash(const __u8 *s)
{
	__u32 h = 2166136261u;

#pragma unroll
	for (int i = 0; i < 10; i++) {
		h ^= s[i];
		h *= 16777619u;
	}
	return h;
}

SEC("xdp")
int hftbot_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	const struct hftbot_config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct ethhdr *eth = data;
	__u16 proto;
	void *p;

	count(HFTBOT_CNT_RX);
	if ((void *)(eth + 1) > data_end)
		return other(cfg, HFTBOT_CNT_SHORT_ETH);
	proto = eth->h_proto;
	p = eth + 1;

	/* up to two VLAN tags (802.1Q / 802.1ad / QinQ 0x9100); unrolled: no loops of
	 * unknown bound for the verifier */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD) &&
		    proto != bpf_htons(0x9100))
			break;
		struct vlan_hdr *vh = p;

		if ((void *)(vh + 1) > data_end)
			return other(cfg, HFTBOT_CNT_BAD_VLAN);
		proto = vh->encap_proto;
		p = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD) ||
	    proto == bpf_htons(0x9100))
		return other(cfg, HFTBOT_CNT_BAD_VLAN); /* a third tag */
	if (proto != bpf_htons(ETH_P_IP))
		return other(cfg, HFTBOT_CNT_NOT_IPV4);

	struct iphdr *ip = p;

	if ((void *)(ip + 1) > data_end)
		return other(cfg, HFTBOT_CNT_BAD_IP);
	if (ip->version != 4 || ip->ihl < 5)
		return other(cfg, HFTBOT_CNT_BAD_IP);
	__u32 ihl = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);

	if (tot < ihl || (void *)ip + tot > data_end)
		return other(cfg, HFTBOT_CNT_BAD_IP);
	if (ip->frag_off & bpf_htons(0x3FFF)) /* MF or a fragment offset */
		return other(cfg, HFTBOT_CNT_IP_FRAG);
	if (ip->protocol != IPPROTO_UDP)
		return other(cfg, HFTBOT_CNT_NOT_UDP);

	/* ihl is at most 60: the verifier tracks the variable offset through this bound */
	struct udphdr *udp = (void *)ip + (ihl & 0x3C);

	if ((void *)(udp + 1) > data_end)
		return other(cfg, HFTBOT_CNT_BAD_UDP);
	__u32 ulen = bpf_ntohs(udp->len);

	if (ulen < sizeof(*udp) || (ihl & 0x3C) + ulen > tot)
		return other(cfg, HFTBOT_CNT_BAD_UDP);

	struct hftbot_feed_key key = { .daddr = ip->daddr, .dport = udp->dest, .pad = 0 };
	struct hftbot_feed_val *feed = bpf_map_lookup_elem(&feeds, &key);

	if (!feed && cfg && cfg->any_port) {
		key.dport = 0;
		feed = bpf_map_lookup_elem(&feeds, &key);
	}
	if (!feed)
		return other(cfg, HFTBOT_CNT_NO_MATCH);
	count(HFTBOT_CNT_MATCHED);

	__u32 target = ctx->rx_queue_index;

	if (cfg && cfg->steer != HFTBOT_STEER_QUEUE && cfg->n_pipelines > 0) {
		__u8 *mold = (void *)(udp + 1);
		__u32 h = 0;

		/* MoldUDP64 header: session(10) seq(8) count(2); first block: len(2) type(1) locate(2) */
		if (cfg->steer == HFTBOT_STEER_SESSION) {
			if ((void *)(mold + 20) > data_end) {
				count(HFTBOT_CNT_MOLD_SHORT);
			} else {
				h = session_hash(mold);
			}
		} else {
			if ((void *)(mold + 25) > data_end) {
				count(HFTBOT_CNT_MOLD_SHORT);
			} else {
				h = ((__u32)mold[23] << 8) | mold[24];
			}
		}
		target = feed->xsk_base + h % cfg->n_pipelines;
	}
	if (!bpf_map_lookup_elem(&xsks, &target)) {
		count(HFTBOT_CNT_NO_SOCKET);
		count(HFTBOT_CNT_PASSED);
		return XDP_PASS;
	}
	count(HFTBOT_CNT_REDIRECTED);
	/* flags (low bits) = verdict should the socket vanish between lookup and redirect */
	return bpf_redirect_map(&xsks, target, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
