#include "lib/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
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

/* Whether something accepts connections on the Unix socket a: 1 yes, 0
 * no (a stale socket file, safe to remove), or -errno when it cannot be
 * told. A connection that is taken is closed at once. */
static int unix_live(const struct addr *a)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, &a->sa.sa, a->len);
    int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS) /* EAGAIN: its backlog is full */
        return 1;
    if (e == ECONNREFUSED || e == ENOENT)
        return 0;
    return -e;
}

int addr_unix_claim(const struct addr *a, char *err, size_t errlen)
{
    struct stat sb;
    if (lstat(a->un.sun_path, &sb) == 0 && S_ISSOCK(sb.st_mode)) {
        /* left by a daemon that is gone, or another one's */
        int live = unix_live(a);
        if (live > 0) {
            snprintf(err, errlen,
                     "another process (another mktd?) accepts connections on %s; not taking it "
                     "over",
                     a->un.sun_path);
            return -EADDRINUSE;
        }
        if (live < 0) {
            snprintf(err, errlen,
                     "cannot tell whether another process listens on %s (%s); not removing it",
                     a->un.sun_path, strerror(-live));
            return -EADDRINUSE;
        }
        unlink(a->un.sun_path);
    }
    addr_mkdir_parent(a->un.sun_path);
    return 0;
}

int addr_socket_perms(const char *path, unsigned mode, const char *group, char *err, size_t errlen)
{
    if (mode && chmod(path, (mode_t)mode) < 0) {
        snprintf(err, errlen, "socket_mode %04o on %s: %s", mode, path, strerror(errno));
        return -1;
    }
    if (group) {
        struct group *g = getgrnam(group);
        if (!g) {
            snprintf(err, errlen, "socket_group: no group named '%s'", group);
            return -1;
        }
        if (chown(path, (uid_t)-1, g->gr_gid) < 0) {
            snprintf(err, errlen, "socket_group %s on %s: %s", group, path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

int addr_listen(const struct addr *a, char *err, size_t errlen)
{
    if (a->family == AF_UNIX && addr_unix_claim(a, err, errlen) < 0)
        return -1;
    int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    if (a->family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, &a->sa.sa, a->len) < 0 || listen(fd, 128) < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
