/* floodgen: hostile UDP 434 / ICMP solicitation load for bench/flood.py.
 *
 * Built at bench time (gcc -O2, see bench/flood.py build_generator()); run inside the
 * generator's network namespace.  It sends with sendmmsg(2) in batches and, for spoofed
 * sources, through a raw socket with IP_HDRINCL or an AF_PACKET socket (Ethernet
 * frames from one or many MAC addresses, PACKET_QDISC_BYPASS).
 *
 *   --mode udp    a plain UDP socket bound to --bind (one source address and port)
 *   --mode raw    IP_HDRINCL: source addresses drawn from --src-net (a /32: one source)
 *   --mode frame  Ethernet frames on --ifname to --dst-mac; source MACs from a pool of
 *                 --src-macs addresses (1: one), IP sources from --src-net
 *
 *   --kind random     random bytes, 1..120 of them
 *          truncated  a registration request (type 1) cut short of its 24 fixed bytes
 *                     or of its MN-HA authentication extension
 *          unauth     a well-formed request: home address random in --home-net, home
 *                     agent --ha, random identification, an MN-HA extension with a
 *                     random SPI (>= 256) and authenticator
 *          solicit    ICMP router solicitations (type 10) to 224.0.0.2, TTL 1 (raw/frame)
 *                     (care-of address: --coa, else the packet's source address)
 *          mix        random, truncated and unauth in turn
 *          mixlink    mix plus solicitations (frame mode: the FA's visited link)
 *
 * Runs --seconds at most --pps datagrams per second (0: as fast as it can), then prints
 * one JSON line: {"sent":..,"errors":..,"seconds":..,"pps":..}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAXPKT 256

enum mode { M_UDP, M_RAW, M_FRAME };
enum kind { K_RANDOM, K_TRUNCATED, K_UNAUTH, K_SOLICIT, K_MIX, K_MIXLINK };

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static inline uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static int parse_net(const char *text, uint32_t *base, uint32_t *hostmask) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", text);
    char *slash = strchr(buf, '/');
    int bits = 32;
    if (slash) {
        *slash = 0;
        bits = atoi(slash + 1);
    }
    struct in_addr a;
    if (!inet_aton(buf, &a) || bits < 0 || bits > 32)
        return -1;
    *hostmask = bits == 32 ? 0 : (0xFFFFFFFFu >> bits);
    *base = ntohl(a.s_addr) & ~*hostmask;
    return 0;
}

static int parse_mac(const char *text, uint8_t mac[6]) {
    unsigned int m[6];
    if (sscanf(text, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)m[i];
    return 0;
}

static uint16_t csum(const void *data, size_t len, uint32_t sum) {
    const uint8_t *p = data;
    while (len > 1) {
        sum += (uint32_t)p[0] << 8 | p[1];
        p += 2;
        len -= 2;
    }
    if (len)
        sum += (uint32_t)p[0] << 8;
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return (uint16_t)~sum;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

static void fill_random(uint8_t *p, size_t n) {
    while (n >= 8) {
        uint64_t r = rnd();
        memcpy(p, &r, 8);
        p += 8;
        n -= 8;
    }
    uint64_t r = rnd();
    memcpy(p, &r, n);
}

/* the UDP payload of one datagram of kind k; returns its length */
static size_t payload(uint8_t *p, enum kind k, uint32_t home_base, uint32_t home_mask,
                      uint32_t ha, uint32_t coa) {
    if (k == K_RANDOM) {
        size_t n = 1 + rnd() % 120;
        fill_random(p, n);
        return n;
    }
    /* a registration request: type, flags, lifetime, home, HA, CoA, identification */
    p[0] = 1;
    p[1] = 0x02; /* T: reverse tunnelling */
    p[2] = 0x02;
    p[3] = 0x58; /* lifetime 600 */
    put32(p + 4, home_base | ((uint32_t)rnd() & home_mask));
    put32(p + 8, ha);
    put32(p + 12, coa);
    fill_random(p + 16, 8);
    /* MN-HA authentication extension: type 32, length 20, SPI, 16-byte authenticator */
    p[24] = 32;
    p[25] = 20;
    put32(p + 26, 256 + (uint32_t)(rnd() % 0x7FFFFF00u));
    fill_random(p + 30, 16);
    if (k == K_TRUNCATED)
        return 1 + rnd() % 45; /* anything short of the whole 46 bytes */
    return 46;
}

int main(int argc, char **argv) {
    enum mode mode = M_UDP;
    enum kind kind = K_MIX;
    const char *dst_text = NULL, *bind_text = NULL, *src_net = NULL, *home_net = "10.0.0.0/8";
    const char *ha_text = NULL, *ifname = NULL, *dst_mac_text = NULL, *coa_text = NULL;
    double seconds = 10, pps = 0;
    int dport = 434, src_macs = 1;
    unsigned long seed = 1;
    static const struct option opts[] = {
        {"mode", 1, 0, 'm'},     {"kind", 1, 0, 'k'},    {"dst", 1, 0, 'd'},
        {"dport", 1, 0, 'p'},    {"bind", 1, 0, 'b'},    {"src-net", 1, 0, 's'},
        {"home-net", 1, 0, 'H'}, {"ha", 1, 0, 'a'},      {"ifname", 1, 0, 'i'},
        {"dst-mac", 1, 0, 'M'},  {"src-macs", 1, 0, 'n'}, {"seconds", 1, 0, 't'},
        {"pps", 1, 0, 'r'},      {"seed", 1, 0, 'S'},    {"coa", 1, 0, 'c'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            mode = !strcmp(optarg, "raw") ? M_RAW : !strcmp(optarg, "frame") ? M_FRAME : M_UDP;
            break;
        case 'k':
            kind = !strcmp(optarg, "random")      ? K_RANDOM
                   : !strcmp(optarg, "truncated") ? K_TRUNCATED
                   : !strcmp(optarg, "unauth")    ? K_UNAUTH
                   : !strcmp(optarg, "solicit")   ? K_SOLICIT
                   : !strcmp(optarg, "mixlink")   ? K_MIXLINK
                                                  : K_MIX;
            break;
        case 'd': dst_text = optarg; break;
        case 'p': dport = atoi(optarg); break;
        case 'b': bind_text = optarg; break;
        case 's': src_net = optarg; break;
        case 'H': home_net = optarg; break;
        case 'a': ha_text = optarg; break;
        case 'i': ifname = optarg; break;
        case 'M': dst_mac_text = optarg; break;
        case 'n': src_macs = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'r': pps = atof(optarg); break;
        case 'S': seed = strtoul(optarg, NULL, 0); break;
        case 'c': coa_text = optarg; break;
        default: fprintf(stderr, "see the comment at the top of floodgen.c\n"); return 2;
        }
    }
    rng_state ^= (uint64_t)seed * 0x2545F4914F6CDD1DULL;
    if (!dst_text)
        return fprintf(stderr, "--dst is required\n"), 2;
    struct in_addr dst_a;
    if (!inet_aton(dst_text, &dst_a))
        return fprintf(stderr, "bad --dst\n"), 2;
    uint32_t dst = ntohl(dst_a.s_addr);
    uint32_t ha = dst;
    if (ha_text) {
        struct in_addr a;
        if (!inet_aton(ha_text, &a))
            return fprintf(stderr, "bad --ha\n"), 2;
        ha = ntohl(a.s_addr);
    }
    uint32_t coa = 0;
    if (coa_text) {
        struct in_addr a;
        if (!inet_aton(coa_text, &a))
            return fprintf(stderr, "bad --coa\n"), 2;
        coa = ntohl(a.s_addr);
    }
    uint32_t home_base, home_mask, src_base = 0, src_mask = 0;
    if (parse_net(home_net, &home_base, &home_mask))
        return fprintf(stderr, "bad --home-net\n"), 2;
    if (src_net && parse_net(src_net, &src_base, &src_mask))
        return fprintf(stderr, "bad --src-net\n"), 2;
    if ((kind == K_SOLICIT || kind == K_MIXLINK) && mode == M_UDP)
        return fprintf(stderr, "solicitations need --mode raw or frame\n"), 2;

    int fd;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(dport), .sin_addr = dst_a};
    struct sockaddr_in mcast = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0xE0000002)};
    struct sockaddr_ll ll = {0};
    uint8_t dst_mac[6] = {0}, own_mac[6] = {0};
    uint32_t bind_addr = 0;
    if (mode == M_UDP) {
        fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0)
            die("socket");
        struct sockaddr_in me = {.sin_family = AF_INET};
        if (bind_text && !inet_aton(bind_text, &me.sin_addr))
            return fprintf(stderr, "bad --bind\n"), 2;
        bind_addr = ntohl(me.sin_addr.s_addr);
        if (bind(fd, (struct sockaddr *)&me, sizeof me))
            die("bind");
    } else if (mode == M_RAW) {
        if (!src_net)
            return fprintf(stderr, "--mode raw needs --src-net\n"), 2;
        fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); /* IPPROTO_RAW implies IP_HDRINCL */
        if (fd < 0)
            die("socket(raw)");
    } else {
        if (!ifname || !dst_mac_text || !src_net || parse_mac(dst_mac_text, dst_mac))
            return fprintf(stderr, "--mode frame needs --ifname, --dst-mac, --src-net\n"), 2;
        fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
        if (fd < 0)
            die("socket(packet)");
        int one = 1;
        setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
        if (ioctl(fd, SIOCGIFHWADDR, &ifr))
            die("SIOCGIFHWADDR");
        memcpy(own_mac, ifr.ifr_hwaddr.sa_data, 6);
        ll.sll_family = AF_PACKET;
        ll.sll_protocol = htons(ETH_P_IP);
        ll.sll_ifindex = (int)if_nametoindex(ifname);
        if (!ll.sll_ifindex)
            die("if_nametoindex");
        if (bind(fd, (struct sockaddr *)&ll, sizeof ll))
            die("bind(packet)");
    }
    int sndbuf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (mode == M_UDP && connect(fd, (struct sockaddr *)&to, sizeof to))
        die("connect");

    static uint8_t bufs[BATCH][MAXPKT];
    struct mmsghdr msgs[BATCH];
    struct iovec iovs[BATCH];
    memset(msgs, 0, sizeof msgs);
    uint64_t sent = 0, errors = 0, turn = 0;
    double t0 = now(), deadline = t0 + seconds;
    for (;;) {
        double t = now();
        if (t >= deadline)
            break;
        if (pps > 0 && sent >= (t - t0) * pps) {
            struct timespec nap = {0, 200000};
            nanosleep(&nap, NULL);
            continue;
        }
        for (int i = 0; i < BATCH; i++) {
            enum kind k = kind;
            if (kind == K_MIX)
                k = (enum kind)(turn++ % 3);
            else if (kind == K_MIXLINK)
                k = (enum kind)(turn++ % 4);
            uint8_t *b = bufs[i];
            uint32_t src = mode == M_UDP ? bind_addr : src_base | ((uint32_t)rnd() & src_mask);
            size_t off = 0;
            if (mode == M_FRAME) {
                int solicit = k == K_SOLICIT;
                if (solicit) {
                    static const uint8_t all_routers[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x02};
                    memcpy(b, all_routers, 6);
                } else {
                    memcpy(b, dst_mac, 6);
                }
                if (src_macs <= 1) {
                    memcpy(b + 6, own_mac, 6);
                } else { /* locally administered unicast, one of a pool of src_macs */
                    uint32_t n = (uint32_t)(rnd() % (uint64_t)src_macs);
                    b[6] = 0x02; b[7] = 0xf1; put32(b + 8, n);
                }
                b[12] = 0x08;
                b[13] = 0x00;
                off = 14;
            }
            size_t len;
            uint8_t *ip = b + off;
            if (mode == M_UDP) {
                len = payload(b, k, home_base, home_mask, ha,
                              coa ? coa : bind_addr ? bind_addr : dst);
                msgs[i].msg_hdr.msg_name = NULL;
                msgs[i].msg_hdr.msg_namelen = 0;
            } else {
                size_t body;
                uint8_t proto;
                uint32_t ipdst = dst;
                uint8_t ttl = 64;
                if (k == K_SOLICIT) { /* ICMP router solicitation */
                    uint8_t *icmp = ip + 20;
                    memset(icmp, 0, 8);
                    icmp[0] = 10;
                    uint16_t s = csum(icmp, 8, 0);
                    icmp[2] = s >> 8;
                    icmp[3] = s & 0xFF;
                    body = 8;
                    proto = 1;
                    ipdst = 0xE0000002;
                    ttl = 1;
                } else {
                    uint8_t *udp = ip + 20;
                    size_t n = payload(udp + 8, k, home_base, home_mask, ha, coa ? coa : src);
                    uint16_t sport = 1024 + rnd() % 60000;
                    udp[0] = sport >> 8;
                    udp[1] = sport & 0xFF;
                    udp[2] = dport >> 8;
                    udp[3] = dport & 0xFF;
                    udp[4] = (8 + n) >> 8;
                    udp[5] = (8 + n) & 0xFF;
                    udp[6] = udp[7] = 0; /* no UDP checksum (allowed over IPv4) */
                    body = 8 + n;
                    proto = 17;
                }
                size_t total = 20 + body;
                ip[0] = 0x45;
                ip[1] = 0;
                ip[2] = total >> 8;
                ip[3] = total & 0xFF;
                ip[4] = ip[5] = 0; /* id: the kernel fills it in (raw) */
                ip[6] = 0x40; /* DF */
                ip[7] = 0;
                ip[8] = ttl;
                ip[9] = proto;
                ip[10] = ip[11] = 0;
                put32(ip + 12, src);
                put32(ip + 16, ipdst);
                if (mode == M_FRAME) {
                    uint16_t s = csum(ip, 20, 0);
                    ip[10] = s >> 8;
                    ip[11] = s & 0xFF;
                }
                len = off + total;
                if (mode == M_RAW) {
                    msgs[i].msg_hdr.msg_name = k == K_SOLICIT ? &mcast : &to;
                    msgs[i].msg_hdr.msg_namelen = sizeof to;
                } else {
                    msgs[i].msg_hdr.msg_name = &ll;
                    msgs[i].msg_hdr.msg_namelen = sizeof ll;
                }
            }
            iovs[i].iov_base = b;
            iovs[i].iov_len = len;
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int done = 0;
        while (done < BATCH) {
            int r = sendmmsg(fd, msgs + done, BATCH - done, 0);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                errors += BATCH - done; /* ENOBUFS, ECONNREFUSED (an ICMP error), ... */
                break;
            }
            done += r;
        }
        sent += done;
    }
    double elapsed = now() - t0;
    printf("{\"sent\": %llu, \"errors\": %llu, \"seconds\": %.3f, \"pps\": %.0f}\n",
           (unsigned long long)sent, (unsigned long long)errors, elapsed, sent / elapsed);
    return 0;
}
