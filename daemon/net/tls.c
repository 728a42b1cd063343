#define _GNU_SOURCE
#include "net/tls.h"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

/* OpenSSL's queued errors as one line (the last, most specific one). */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()))
        last = e;
    if (!last)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(last, buf, len);
    return buf;
}

SSL_CTX *tls_server_ctx(const char *cert, const char *key, const char *client_ca, char *err,
                        size_t errlen)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "tls: %s", ssl_reason(why, sizeof(why)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "tls.cert %s: %s", cert, ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "tls.key %s: %s", key, ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls.key %s does not match tls.cert %s: %s", key, cert,
                 ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
            snprintf(err, errlen, "tls.client_ca %s: %s", client_ca, ssl_reason(why, sizeof(why)));
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct bufferevent *tls_bev_accept(struct event_base *base, SSL_CTX *ctx, evutil_socket_t fd)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev) /* a client that closes without close_notify: end of stream, not an error */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

struct bufferevent *tls_http_bevcb(struct event_base *base, void *arg)
{
    SSL_CTX *ctx = *(SSL_CTX **)arg;
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int tls_peer_cn(struct bufferevent *bev, char *cn, size_t len)
{
    cn[0] = 0;
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl)
        return 0;
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (!x)
        return 0;
    int ok = SSL_get_verify_result(ssl) == X509_V_OK;
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, (int)len);
    X509_free(x);
    if (n <= 0 || (size_t)n != strlen(cn)) { /* none, or a NUL inside */
        cn[0] = 0;
        return 0;
    }
    return ok;
}

void tls_close_notify(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl && SSL_is_init_finished(ssl)) {
        SSL_set_quiet_shutdown(ssl, 0);
        SSL_shutdown(ssl); /* sends close_notify; the answer is not awaited */
        ERR_clear_error();
    }
}

const char *tls_bev_error(struct bufferevent *bev, char *buf, size_t len)
{
    /* libevent queues SSL_get_error()'s code too (no library set): the
     * first one with a library is OpenSSL's reason */
    unsigned long e, best = 0, any = 0;
    while ((e = bufferevent_get_openssl_error(bev))) {
        if (!best && ERR_GET_LIB(e))
            best = e;
        any = any ? any : e;
    }
    if (!best && !any)
        return ssl_reason(buf, len);
    if (!best) {
        snprintf(buf, len, "%s", any == SSL_ERROR_SYSCALL ? "connection lost" : "protocol error");
        return buf;
    }
    ERR_error_string_n(best, buf, len);
    return buf;
}

/* ---- client ---- */

SSL_CTX *tls_client_ctx(const char *ca_file, char *err, size_t errlen)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "tls: %s", ssl_reason(why, sizeof(why)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    int rc = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (rc != 1) {
        snprintf(err, errlen, "--ca %s: %s", ca_file ? ca_file : "(system)",
                 ssl_reason(why, sizeof(why)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

SSL *tls_client_connect(SSL_CTX *ctx, int fd, const char *host, char *err, size_t errlen)
{
    char why[256];
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        snprintf(err, errlen, "tls: %s", ssl_reason(why, sizeof(why)));
        return NULL;
    }
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(vp, host);
    } else {
        SSL_set_tlsext_host_name(ssl, host);
        X509_VERIFY_PARAM_set1_host(vp, host, 0);
    }
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK)
            snprintf(err, errlen, "tls handshake with %s: certificate not trusted: %s", host,
                     X509_verify_cert_error_string(v));
        else
            snprintf(err, errlen, "tls handshake with %s: %s", host, ssl_reason(why, sizeof(why)));
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}
