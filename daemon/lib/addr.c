#include "lib/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int addr_host_port(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -EINVAL;
    size_t hl = (size_t)(colon - s);
    const char *h = s;
    if (h[0] == '[') {
        if (hl < 2 || h[hl - 1] != ']')
            return -EINVAL;
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= hostlen)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || colon[1] == 0 || p < 1 || p > 65535)
        return -EINVAL;
    *port = (int)p;
    return 0;
}

int addr_parse(const char *s, struct addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    if (strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        if (!*path || strlen(path) >= sizeof(a->un.sun_path)) {
            snprintf(err, errlen, "unix socket path must be 1 to %zu bytes",
                     sizeof(a->un.sun_path) - 1);
            return -EINVAL;
        }
        a->family = AF_UNIX;
        a->un.sun_family = AF_UNIX;
        strcpy(a->un.sun_path, path);
        a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        return 0;
    }
    if (strncmp(s, "tcp:", 4) == 0 || strncmp(s, "tls:", 4) == 0) {
        char host[256];
        int port;
        a->tls = s[1] == 'l';
        if (addr_host_port(s + 4, host, sizeof(host), &port) < 0) {
            snprintf(err, errlen, "expected %.3s:HOST:PORT", s);
            return -EINVAL;
        }
        if (strcmp(host, "localhost") == 0)
            strcpy(host, "127.0.0.1");
        if (inet_pton(AF_INET, host, &a->sa.in.sin_addr) == 1) {
            a->family = AF_INET;
            a->sa.in.sin_family = AF_INET;
            a->sa.in.sin_port = htons((uint16_t)port);
            a->len = sizeof(a->sa.in);
            return 0;
        }
        if (inet_pton(AF_INET6, host, &a->sa.in6.sin6_addr) == 1) {
            a->family = AF_INET6;
            a->sa.in6.sin6_family = AF_INET6;
            a->sa.in6.sin6_port = htons((uint16_t)port);
            a->len = sizeof(a->sa.in6);
            return 0;
        }
        snprintf(err, errlen, "'%s' is not an IP address", host);
        return -EINVAL;
    }
    snprintf(err, errlen, "expected tcp:HOST:PORT, tls:HOST:PORT or unix:PATH");
    return -EINVAL;
}

void addr_mkdir_parent(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        mkdir(buf, 0755);
        *p = '/';
    }
}

int addr_connect(const char *s, char *err, size_t errlen)
{
    struct addr a;
    if (addr_parse(s, &a, err, errlen) < 0)
        return -EINVAL;
    int fd = socket(a.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, &a.sa.sa, a.len) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", s, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    return fd;
}
