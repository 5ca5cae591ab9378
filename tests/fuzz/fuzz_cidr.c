/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz plugins/common/cidr: network lists as the rule and config files
 * give them, and the match against a client address.
 *
 * Invariants: a parsed network has a prefix within its family and no host
 * bits; its rendering (inet_ntop + "/prefix") parses to the same network;
 * the network's own address matches it; cidr_match() of any address agrees
 * with a bit-by-bit reference (IPv4-mapped IPv6 addresses match IPv4
 * networks); an error message is NUL-terminated in its buffer and the
 * list is left empty.
 *
 * Input: byte 0 bit 0 = CIDR_HOST_BITS_OK, bit 1 = probe address is IPv6;
 * bytes 1..16 = probe address; the rest = the list.
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "cidr.h"

static bool ref_in(const struct cidr *c, int family, const unsigned char *a)
{
    unsigned char m[16];

    if (family == AF_INET6 && c->family == AF_INET) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) != 0)
            return false;
        memcpy(m, a + 12, 4);
        family = AF_INET;
        a = m;
    }
    if (family != c->family)
        return false;
    for (unsigned bit = 0; bit < c->prefix; bit++) {
        unsigned char mask = (unsigned char)(0x80u >> (bit % 8));
        if ((a[bit / 8] & mask) != (c->addr[bit / 8] & mask))
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cidr_list l;
    char err[128], probe[INET6_ADDRSTRLEN];
    unsigned flags;

    if (size < 17)
        return 0;
    flags = (data[0] & 1) ? CIDR_HOST_BITS_OK : 0;
    int pfam = (data[0] & 2) ? AF_INET6 : AF_INET;
    FUZZ_CHECK(inet_ntop(pfam, data + 1, probe, sizeof probe) != NULL);

    char *text = malloc(size - 16);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data + 17, size - 17);
    text[size - 17] = '\0';

    memset(err, 'Z', sizeof err);
    if (cidr_list_parse(text, flags, &l, err, sizeof err) != 0) {
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
        FUZZ_CHECK(l.v == NULL && l.n == 0);
        free(text);
        return 0;
    }
    bool any = false;
    for (size_t i = 0; i < l.n; i++) {
        const struct cidr *c = &l.v[i];
        unsigned max = c->family == AF_INET ? 32 : 128;
        char addr[INET6_ADDRSTRLEN], back[INET6_ADDRSTRLEN + 8];
        struct cidr again;

        FUZZ_CHECK(c->family == AF_INET || c->family == AF_INET6);
        FUZZ_CHECK(c->prefix <= max);
        for (unsigned bit = c->prefix; bit < max; bit++)
            FUZZ_CHECK(!(c->addr[bit / 8] & (0x80u >> (bit % 8))));
        FUZZ_CHECK(inet_ntop(c->family, c->addr, addr, sizeof addr) != NULL);
        snprintf(back, sizeof back, "%s/%u", addr, c->prefix);
        FUZZ_CHECK(cidr_parse(back, 0, &again, err, sizeof err) == 0);
        FUZZ_CHECK(again.family == c->family && again.prefix == c->prefix &&
                   memcmp(again.addr, c->addr, sizeof c->addr) == 0);
        FUZZ_CHECK(cidr_match(c, 1, addr) == 1);
        any = any || ref_in(c, pfam, data + 1);
    }
    FUZZ_CHECK(cidr_match(l.v, l.n, probe) == (any ? 1 : 0));
    cidr_list_free(&l);
    free(text);
    return 0;
}
