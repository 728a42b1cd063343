/*
 * bare_ingest — the ingest limit of this machine: a libevent server on the
 * daemon's kind of socket that reads newline-delimited lines and answers
 * each with one fixed ok line, without decoding, evaluating or storing.
 * loadgen against it measures what sockets, libevent and the load generator
 * allow with no work done per event.
 *
 *   bare_ingest (--unix PATH | --tcp HOST:PORT)...
 *
 * Runs until SIGINT or SIGTERM, then prints the lines it answered.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define OUT_HIGH (4u << 20) /* as the daemon: stop reading a client that does not read */
#define OUT_LOW (1u << 20)

static const char answer[] = "{\"id\":null,\"status\":\"ok\",\"actions\":0}\n";
static unsigned long long lines_total;

static void read_lines(struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) > OUT_HIGH) {
        bufferevent_disable(bev, EV_READ);
        return;
    }
    size_t have = evbuffer_get_length(in);
    if (!have)
        return;
    const char *p = (const char *)evbuffer_pullup(in, -1);
    size_t used = 0;
    for (;;) {
        const char *nl = memchr(p + used, '\n', have - used);
        if (!nl)
            break;
        evbuffer_add(out, answer, sizeof(answer) - 1);
        lines_total++;
        used = (size_t)(nl - p) + 1;
    }
    evbuffer_drain(in, used);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    read_lines(bev);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    if (!(bufferevent_get_enabled(bev) & EV_READ) &&
        evbuffer_get_length(bufferevent_get_output(bev)) <= OUT_LOW) {
        bufferevent_enable(bev, EV_READ);
        read_lines(bev);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct bufferevent *bev =
        bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, OUT_LOW, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopexit(arg, NULL);
}

static struct evconnlistener *listen_on(struct event_base *base, const char *kind,
                                        const char *where)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    int len;
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
    if (strcmp(kind, "--unix") == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        if (strlen(where) >= sizeof(un->sun_path))
            return NULL;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, where);
        unlink(where);
        len = (int)sizeof(*un);
    } else {
        char host[128];
        const char *colon = strrchr(where, ':');
        if (!colon || (size_t)(colon - where) >= sizeof(host))
            return NULL;
        memcpy(host, where, (size_t)(colon - where));
        host[colon - where] = 0;
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            return NULL;
        len = (int)sizeof(*in);
        flags |= LEV_OPT_REUSEABLE;
    }
    return evconnlistener_new_bind(base, accept_cb, NULL, flags, 128, (struct sockaddr *)&ss, len);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc % 2 == 0) {
        fprintf(stderr, "usage: bare_ingest (--unix PATH | --tcp HOST:PORT)...\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct evconnlistener *ls[16];
    int n = 0;
    for (int i = 1; i + 1 < argc && n < 16; i += 2) {
        if (strcmp(argv[i], "--unix") != 0 && strcmp(argv[i], "--tcp") != 0) {
            fprintf(stderr, "bare_ingest: unknown option %s\n", argv[i]);
            return 2;
        }
        if (!(ls[n] = listen_on(base, argv[i], argv[i + 1]))) {
            perror(argv[i + 1]);
            return 1;
        }
        n++;
    }
    struct event *sint = evsignal_new(base, SIGINT, signal_cb, base);
    struct event *sterm = evsignal_new(base, SIGTERM, signal_cb, base);
    event_add(sint, NULL);
    event_add(sterm, NULL);
    fprintf(stderr, "bare_ingest: ready\n");
    event_base_dispatch(base);
    printf("bare_ingest: answered %llu lines\n", lines_total);
    for (int i = 0; i < n; i++)
        evconnlistener_free(ls[i]);
    event_free(sint);
    event_free(sterm);
    event_base_free(base);
    return 0;
}
