/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dkp_key: signing key files. The permission check is deliberate: a DKIM
 * private key that other local users can read lets them sign as the
 * domain, and OpenDKIM users expect the same refusal.
 */
#include "dkp_key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define DKP_KEY_MAX_SIZE (64 * 1024)

int dkp_key_load(const char *path, enum dkp_alg alg, char **pem, unsigned *bits, char *err,
                 size_t errlen)
{
    struct stat st;
    char *text = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    *pem = NULL;
    if (fd < 0) {
        snprintf(err, errlen, "cannot open key file: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "key file is not a regular file");
        goto fail;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, errlen,
                 "key file is accessible by group or others (mode %04o); chmod 600 it",
                 (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    if (st.st_size <= 0 || st.st_size > DKP_KEY_MAX_SIZE) {
        snprintf(err, errlen, "key file is empty or too large (%lld bytes)",
                 (long long)st.st_size);
        goto fail;
    }
    text = malloc((size_t)st.st_size + 1);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "cannot read key file: %s", n < 0 ? strerror(errno) : "short");
            goto fail;
        }
        got += (size_t)n;
    }
    text[got] = '\0';
    bio = BIO_new_mem_buf(text, (int)got);
    if (bio)
        pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (!pkey) {
        snprintf(err, errlen, "not a PEM private key (or encrypted)");
        goto fail;
    }
    int type = EVP_PKEY_get_base_id(pkey);
    if (alg == DKP_ALG_RSA_SHA256 && type != EVP_PKEY_RSA) {
        snprintf(err, errlen, "rsa-sha256 needs an RSA key, the file holds a %s key",
                 type == EVP_PKEY_ED25519 ? "Ed25519" : "different");
        goto fail;
    }
    if (alg == DKP_ALG_ED25519_SHA256 && type != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "ed25519-sha256 needs an Ed25519 key, the file holds a %s key",
                 type == EVP_PKEY_RSA ? "RSA" : "different");
        goto fail;
    }
    *bits = (unsigned)EVP_PKEY_get_bits(pkey);
    if (alg == DKP_ALG_RSA_SHA256 && *bits < 1024) {
        snprintf(err, errlen, "RSA key of %u bits is too small (RFC 8301: at least 1024)", *bits);
        goto fail;
    }
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    close(fd);
    *pem = text;
    return 0;
fail:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    free(text);
    close(fd);
    return -1;
}
