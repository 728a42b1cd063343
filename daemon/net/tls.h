/* TLS for `tls:HOST:PORT` (NDJSON) and `https:HOST:PORT` listeners
 * (`daemon.tls: {cert, key, client_ca}`), over OpenSSL and libevent's
 * bufferevent_openssl; and the client side of `mktd send`. */
#ifndef MKTD_TLS_H
#define MKTD_TLS_H

#include <event2/util.h>
#include <openssl/ssl.h>
#include <stddef.h>

struct event_base;
struct bufferevent;

/* A server context: certificate chain and key (PEM), and, when client_ca is
 * not NULL, clients must present a certificate it signed. NULL and err on
 * failure (naming the file and OpenSSL's reason). */
SSL_CTX *tls_server_ctx(const char *cert, const char *key, const char *client_ca, char *err,
                        size_t errlen);
/* A bufferevent accepting TLS on fd (closed, with the SSL, when freed). */
struct bufferevent *tls_bev_accept(struct event_base *base, SSL_CTX *ctx, evutil_socket_t fd);
/* For evhttp_set_bevcb: arg is an SSL_CTX ** (read at each connection, so
 * that a reload may swap the context). */
struct bufferevent *tls_http_bevcb(struct event_base *base, void *arg);
/* 1 and the CN of the peer's certificate when one was presented and
 * verified; 0 otherwise (also for a connection without TLS). */
int tls_peer_cn(struct bufferevent *bev, char *cn, size_t len);
/* Sends close_notify on a TLS bufferevent (nothing otherwise). */
void tls_close_notify(struct bufferevent *bev);
/* OpenSSL's reason for the last failure on bev, for the log. */
const char *tls_bev_error(struct bufferevent *bev, char *buf, size_t len);

/* Client side: verifies the server against ca_file (NULL: the system's
 * store) and host (a name or an IP address). */
SSL_CTX *tls_client_ctx(const char *ca_file, char *err, size_t errlen);
/* Handshake over the connected, blocking socket fd. */
SSL *tls_client_connect(SSL_CTX *ctx, int fd, const char *host, char *err, size_t errlen);

#endif
