/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_dns: the plugin's `dns_servers` key, checked at init so that
 * `sluice --check` names a bad entry. Key records are looked up on the
 * host's asynchronous resolver (api->dns_query), which gets the list as
 * written; this module only validates it. Pure, unit-tested.
 */
#ifndef DKP_DNS_H
#define DKP_DNS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DKP_DNS_MAX_SERVERS 3

struct dkp_dns_conf {
    struct sockaddr_storage server[DKP_DNS_MAX_SERVERS];
    socklen_t server_len[DKP_DNS_MAX_SERVERS];
    size_t nservers;
};

/* Parse "127.0.0.1:5353, [::1]:53, 192.0.2.1" (port 53 by default) into
 * conf's server list. 0, or -1 with a message. */
int dkp_dns_parse_servers(const char *list, struct dkp_dns_conf *conf, char *err, size_t errlen);

#endif
