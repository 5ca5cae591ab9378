/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spam_uri: URIs in plain text, and the host part of a URI or of link
 * text. Pure functions over bytes.
 */
#ifndef SPAM_URI_H
#define SPAM_URI_H

#include <stddef.h>

/*
 * Find URIs in text: scheme://... for http, https, ftp; "mailto:"; and
 * bare "www." names (reported with "http://" prepended). Trailing
 * punctuation that usually ends a sentence is not part of the URI.
 * Calls fn for each (pointer into a scratch buffer valid for the call);
 * stops after max URIs. Returns the number reported.
 */
size_t spam_uri_extract(const char *text, size_t len, size_t max,
                        void (*fn)(void *arg, const char *uri, size_t ulen), void *arg);

/*
 * The lowercased host of a URI ("http://User@Host.Example:80/x" ->
 * "host.example"), written to out (NUL-terminated). 0, or -1 when the URI
 * has no host (mailto:, relative links, ...).
 */
int spam_uri_host(const char *uri, char *out, size_t outsz);

/*
 * When link text looks like a URL or a bare domain ("www.bank.example",
 * "https://bank.example/login", "bank.example"), its lowercased host;
 * 0 or -1.
 */
int spam_uri_text_host(const char *text, char *out, size_t outsz);

/*
 * 1 when hosts a and b belong to different sites: neither equals the
 * other nor is a subdomain of it, after dropping a leading "www.".
 */
int spam_uri_hosts_differ(const char *a, const char *b);

#endif
