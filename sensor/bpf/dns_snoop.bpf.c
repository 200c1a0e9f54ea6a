// SPDX-License-Identifier: Apache-2.0
//
// dns_snoop: a socket filter for an AF_PACKET socket that passes only DNS traffic.
//
// Attached to `socket(AF_PACKET, SOCK_RAW, 0)` before the socket is bound, so no unfiltered
// packet ever reaches user space. For each packet it walks Ethernet (and up to two VLAN tags),
// IPv4 or IPv6 (with extension headers), then UDP or TCP, and keeps the packet when either port
// is the DNS port. Everything else is dropped in the kernel and counted by reason.
//
// Delivery (the `.rodata` global `delivery`, set by user space at load time):
//   0 = socket:      the filter returns the packet length, the kernel queues the packet on the
//                    AF_PACKET socket, user space reads it with recvfrom.
//   1 = ring buffer: the filter copies metadata + up to MAX_CAPTURE bytes into a BPF ring buffer
//                    and drops the packet from the socket.
// Both are kept so the benchmark can compare them; docs/decisions.md explains the default.
//
// Counters live in a per-CPU array indexed by `enum counter`; user space sums the CPUs. The
// indices are part of the contract with sensor/src/bpf.rs (`Counter`).
//
// Connection starts (`flows`, set by user space): before the DNS checks, every TCP SYN, SYN-ACK
// and every UDP or SCTP datagram is looked up by its 5-tuple (and kind) in an LRU hash; one not
// reported within `flow_interval_ns` is written to the FLOWS ring buffer as a `struct
// flow_event` and its time recorded. Established traffic (TCP without SYN) costs one header read
// and nothing in user space; a repeated datagram costs one map lookup. A record the ring buffer
// has no room for is counted and its key forgotten, so the next packet of the flow reports it.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_CAPTURE 4096      /* ring-buffer delivery: bytes copied per packet (a power of two) */
#define MAX_IPV6_EXT 6        /* extension headers walked before giving up */
#define MAX_VLAN_TAGS 2
#define LOOPBACK_IFINDEX 1    /* `lo` is ifindex 1 in every network namespace */

/* Set by user space with EbpfLoader::override_global before loading. */
volatile const __u16 dns_port = 53;
volatile const __u8 delivery = 0;
volatile const __u8 flows = 0;
volatile const __u64 flow_interval_ns = 60ULL * 1000 * 1000 * 1000;

enum counter {
    C_SEEN = 0,          /* every packet the filter ran on */
    C_PASSED,            /* DNS packets handed to user space */
    C_NOT_IP,            /* ARP, LLDP, ... */
    C_NOT_UDP_TCP,       /* ICMP, ESP, ... */
    C_NOT_DNS_PORT,      /* UDP/TCP on other ports */
    C_FRAGMENT,          /* a non-first IP fragment: no transport header to look at */
    C_LOOPBACK_OUTGOING, /* the outgoing copy on `lo`, which also shows the incoming copy */
    C_HEADER_TRUNCATED,  /* a header runs past the end of the packet */
    C_TCP_NO_PAYLOAD,    /* SYN, ACK, FIN: nothing a DNS parser could use */
    C_IPV6_EXT_LIMIT,    /* more IPv6 extension headers than MAX_IPV6_EXT, or ESP */
    C_RINGBUF_FULL,      /* ring-buffer delivery: no room, packet lost */
    C_OVERSIZE,          /* ring-buffer delivery: packet longer than MAX_CAPTURE, cut */
    C_FLOW_REPORTED,     /* connection starts written to the FLOWS ring buffer */
    C_FLOW_REPEATED,     /* connection starts already reported within the interval */
    C_FLOW_RINGBUF_FULL, /* connection starts the FLOWS ring buffer had no room for */
    C_MAX,
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, C_MAX);
    __type(key, __u32);
    __type(value, __u64);
} COUNTERS SEC(".maps");

/* Ring-buffer delivery: the record layout is `struct event` (header, then `caplen` bytes). */
struct event {
    __u32 len;       /* the packet's length on the wire */
    __u32 caplen;    /* bytes that follow */
    __u32 ifindex;
    __u32 pkt_type;  /* PACKET_HOST, PACKET_OUTGOING, ... */
    __u8 data[MAX_CAPTURE];
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 8 << 20);
} EVENTS SEC(".maps");

/* A connection start: the 5-tuple and what was seen. The layout is part of the contract with
 * sensor/src/flows.rs (`FlowRecord::decode`). */
struct flow_key {
    __u8 family;  /* 4 or 6 */
    __u8 proto;   /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
    __u8 kind;    /* FLOW_SYN, FLOW_SYN_ACK, FLOW_DATAGRAM */
    __u8 pad;
    __u16 sport;  /* network order */
    __u16 dport;
    __u8 saddr[16]; /* IPv4 in the first 4 bytes */
    __u8 daddr[16];
};

enum flow_kind { FLOW_SYN = 1, FLOW_SYN_ACK = 2, FLOW_DATAGRAM = 3 };

struct flow_event {
    struct flow_key key;
    __u32 ifindex;
    __u32 pkt_type;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536); /* user space sets the size at load time */
    __type(key, struct flow_key);
    __type(value, __u64);
} FLOW_SEEN SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4 << 20);
} FLOWS SEC(".maps");

/* A per-CPU scratch record: too large for the 512-byte BPF stack. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct event);
} SCRATCH SEC(".maps");

static __always_inline void count(__u32 which)
{
    __u64 *value = bpf_map_lookup_elem(&COUNTERS, &which);
    if (value)
        *value += 1; /* per-CPU: no other writer */
}

static __always_inline int drop(__u32 which)
{
    count(which);
    return 0;
}

static __always_inline int deliver(struct __sk_buff *skb)
{
    if (delivery == 0) {
        count(C_PASSED);
        return skb->len;
    }

    __u32 zero = 0;
    struct event *e = bpf_map_lookup_elem(&SCRATCH, &zero);
    if (!e)
        return 0;
    __u32 len = skb->len;
    __u32 caplen = len;
    if (caplen > MAX_CAPTURE) {
        caplen = MAX_CAPTURE;
        count(C_OVERSIZE);
    }
    e->len = len;
    e->caplen = caplen;
    e->ifindex = skb->ifindex;
    e->pkt_type = skb->pkt_type;
    /* Bound the length so the verifier can check both the copy and the output size. */
    caplen &= (MAX_CAPTURE * 2 - 1);
    if (caplen == 0 || caplen > MAX_CAPTURE)
        return drop(C_HEADER_TRUNCATED);
    if (bpf_skb_load_bytes(skb, 0, e->data, caplen) < 0)
        return drop(C_HEADER_TRUNCATED);
    __u64 size = offsetof(struct event, data) + caplen;
    if (bpf_ringbuf_output(&EVENTS, e, size, 0) < 0)
        return drop(C_RINGBUF_FULL);
    count(C_PASSED);
    return 0;
}

/* Reports a connection start once per interval (see the top of the file). */
static __always_inline void report_flow(struct __sk_buff *skb, struct flow_key *key)
{
    __u64 now = bpf_ktime_get_ns();
    __u64 *last = bpf_map_lookup_elem(&FLOW_SEEN, key);
    if (last && now - *last < flow_interval_ns) {
        count(C_FLOW_REPEATED);
        return;
    }
    bpf_map_update_elem(&FLOW_SEEN, key, &now, BPF_ANY);
    struct flow_event *e = bpf_ringbuf_reserve(&FLOWS, sizeof(*e), 0);
    if (!e) {
        bpf_map_delete_elem(&FLOW_SEEN, key);
        count(C_FLOW_RINGBUF_FULL);
        return;
    }
    __builtin_memcpy(&e->key, key, sizeof(*key));
    e->ifindex = skb->ifindex;
    e->pkt_type = skb->pkt_type;
    bpf_ringbuf_submit(e, 0);
    count(C_FLOW_REPORTED);
}

static __always_inline int is_ipv6_ext(__u8 next)
{
    return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
           next == IPPROTO_FRAGMENT || next == IPPROTO_AH || next == IPPROTO_MH;
}

SEC("socket")
int dns_snoop(struct __sk_buff *skb)
{
    count(C_SEEN);

    if (skb->pkt_type == PACKET_OUTGOING && skb->ifindex == LOOPBACK_IFINDEX)
        return drop(C_LOOPBACK_OUTGOING);

    __u32 off = ETH_HLEN;
    __u16 proto;
    if (bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)) < 0)
        return drop(C_HEADER_TRUNCATED);
#pragma unroll
    for (int i = 0; i < MAX_VLAN_TAGS; i++) {
        if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
            break;
        if (bpf_skb_load_bytes(skb, off + 2, &proto, sizeof(proto)) < 0)
            return drop(C_HEADER_TRUNCATED);
        off += 4;
    }

    __u8 l4;
    __u32 end; /* where the IP payload ends, from the IP header's own length */
    struct flow_key key = {};
    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr ip;
        if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
            return drop(C_HEADER_TRUNCATED);
        if (ip.ihl < 5)
            return drop(C_HEADER_TRUNCATED);
        if (ip.frag_off & bpf_htons(0x1fff))
            return drop(C_FRAGMENT);
        key.family = 4;
        __builtin_memcpy(key.saddr, &ip.saddr, 4);
        __builtin_memcpy(key.daddr, &ip.daddr, 4);
        l4 = ip.protocol;
        end = off + bpf_ntohs(ip.tot_len);
        off += ip.ihl * 4;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
            return drop(C_HEADER_TRUNCATED);
        key.family = 6;
        __builtin_memcpy(key.saddr, &ip6.saddr, 16);
        __builtin_memcpy(key.daddr, &ip6.daddr, 16);
        l4 = ip6.nexthdr;
        end = off + sizeof(ip6) + bpf_ntohs(ip6.payload_len);
        off += sizeof(ip6);
#pragma unroll
        for (int i = 0; i < MAX_IPV6_EXT; i++) {
            if (!is_ipv6_ext(l4))
                break;
            __u8 ext[2]; /* next header, length */
            if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)) < 0)
                return drop(C_HEADER_TRUNCATED);
            if (l4 == IPPROTO_FRAGMENT) {
                __u16 frag;
                if (bpf_skb_load_bytes(skb, off + 2, &frag, sizeof(frag)) < 0)
                    return drop(C_HEADER_TRUNCATED);
                if (bpf_ntohs(frag) & 0xfff8)
                    return drop(C_FRAGMENT);
                off += 8;
            } else if (l4 == IPPROTO_AH) {
                off += ((__u32)ext[1] + 2) * 4;
            } else {
                off += ((__u32)ext[1] + 1) * 8;
            }
            l4 = ext[0];
        }
        if (is_ipv6_ext(l4) || l4 == IPPROTO_ESP)
            return drop(C_IPV6_EXT_LIMIT);
    } else {
        return drop(C_NOT_IP);
    }

    __u16 ports[2]; /* source, destination */
    if (flows && (l4 == IPPROTO_UDP || l4 == IPPROTO_SCTP || l4 == IPPROTO_TCP)) {
        if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
            return drop(C_HEADER_TRUNCATED);
        key.proto = l4;
        key.sport = ports[0];
        key.dport = ports[1];
        key.kind = FLOW_DATAGRAM;
        if (l4 == IPPROTO_TCP) {
            __u8 flags; /* byte 13 of the TCP header: CWR ECE URG ACK PSH RST SYN FIN */
            if (bpf_skb_load_bytes(skb, off + 13, &flags, sizeof(flags)) < 0)
                return drop(C_HEADER_TRUNCATED);
            key.kind = (flags & 0x02) ? ((flags & 0x10) ? FLOW_SYN_ACK : FLOW_SYN) : 0;
        }
        if (key.kind)
            report_flow(skb, &key);
    }
    if (l4 == IPPROTO_UDP) {
        if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
            return drop(C_HEADER_TRUNCATED);
        if (ports[0] != bpf_htons(dns_port) && ports[1] != bpf_htons(dns_port))
            return drop(C_NOT_DNS_PORT);
        return deliver(skb);
    }
    if (l4 == IPPROTO_TCP) {
        struct tcphdr tcp;
        if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)) < 0)
            return drop(C_HEADER_TRUNCATED);
        if (tcp.source != bpf_htons(dns_port) && tcp.dest != bpf_htons(dns_port))
            return drop(C_NOT_DNS_PORT);
        if (off + tcp.doff * 4 >= end)
            return drop(C_TCP_NO_PAYLOAD);
        return deliver(skb);
    }
    return drop(C_NOT_UDP_TCP);
}

char LICENSE[] SEC("license") = "Apache-2.0";
