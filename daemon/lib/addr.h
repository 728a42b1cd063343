/* Addresses as written in `listen`: "tcp:HOST:PORT", "tls:HOST:PORT" (TCP
 * with TLS on it) and "unix:PATH". */
#ifndef MKTD_ADDR_H
#define MKTD_ADDR_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

struct addr {
    int family; /* AF_INET, AF_INET6 or AF_UNIX */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } sa;
#define un sa.un
    socklen_t len;
    int tls; /* tls:HOST:PORT */
};

int addr_parse(const char *s, struct addr *a, char *err, size_t errlen);
/* "HOST:PORT" (HOST may be [v6]). */
int addr_host_port(const char *s, char *host, size_t hostlen, int *port);
/* Creates the parent directories of a file path (mkdir -p). */
void addr_mkdir_parent(const char *path);
/* Before binding the Unix socket a: a socket file left by a process that
 * is gone is removed (a live one's never is) and the parent directories
 * made. 0, or -EADDRINUSE with err. */
int addr_unix_claim(const struct addr *a, char *err, size_t errlen);
/* daemon.socket_mode (0: as created) and socket_group (NULL: as created)
 * on a Unix socket bound at path. 0, or -1 with err. */
int addr_socket_perms(const char *path, unsigned mode, const char *group, char *err, size_t errlen);
/* A blocking socket bound to a and listening (a Unix one claimed first),
 * or -1 with err. */
int addr_listen(const struct addr *a, char *err, size_t errlen);
/* A connected, blocking socket to the address, or -errno. */
int addr_connect(const char *s, char *err, size_t errlen);

#endif
