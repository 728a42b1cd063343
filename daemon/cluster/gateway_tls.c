/* Cluster mode, the gateway's tls: addresses (spec 14; docs/cluster.md,
 * "The gateway"): a thread per connection terminates TLS (libevent's
 * bufferevent_openssl, as the daemon's tls: listeners) and passes the
 * plain bytes both ways through a socketpair, whose other end the
 * connection's thread reads and writes as it does a tcp: client's socket
 * (cluster_publish). Each side stops reading while the other has
 * PIPE_HIGH bytes waiting to be sent, so a client that does not read its
 * answers holds no more than that here. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "cluster/internal.h"
#include "lib/util.h"
#include "net/tls.h"

#define PIPE_HIGH (1024 * 1024)
#define FLUSH_WAIT_S 10 /* answers still going out to a client once its input ended */

struct tls_pipe {
    struct event_base *base;
    struct bufferevent *tls, *plain;
    int plain_fd; /* our end of the socketpair (the bufferevent's) */
    int tls_fd;   /* the client's socket (the TLS bufferevent's) */
    struct event *timer;
    pthread_t t;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 handshaking, 1 up, -1 failed */
    char cn[160];
    char err[256];
    int tls_done;   /* the client's input ended (or its connection failed) */
    int tls_dead;   /* nothing more can be sent to it */
    int plain_done; /* the connection's thread is done: flush, then leave */
    int ended;      /* the pipe's loop has ended (under mu) */
};

static void set_state(struct tls_pipe *p, int state)
{
    pthread_mutex_lock(&p->mu);
    if (p->state == 0)
        p->state = state;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void leave(struct tls_pipe *p)
{
    if (!p->tls_dead)
        tls_close_notify(p->tls);
    event_base_loopbreak(p->base);
}

/* client -> connection's thread */
static void on_tls_read(struct bufferevent *bev, void *arg)
{
    struct tls_pipe *p = arg;
    struct evbuffer *out = bufferevent_get_output(p->plain);
    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) > PIPE_HIGH)
        bufferevent_disable(bev, EV_READ);
}

static void on_plain_written(struct bufferevent *bev, void *arg)
{
    struct tls_pipe *p = arg;
    (void)bev;
    if (p->tls_done)
        shutdown(p->plain_fd, SHUT_WR); /* the client's input ends here too */
    else
        bufferevent_enable(p->tls, EV_READ);
}

/* connection's thread -> client */
static void on_plain_read(struct bufferevent *bev, void *arg)
{
    struct tls_pipe *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (p->tls_dead) { /* nobody to send them to */
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    struct evbuffer *out = bufferevent_get_output(p->tls);
    evbuffer_add_buffer(out, in);
    if (evbuffer_get_length(out) > PIPE_HIGH)
        bufferevent_disable(bev, EV_READ);
}

static void on_tls_written(struct bufferevent *bev, void *arg)
{
    struct tls_pipe *p = arg;
    (void)bev;
    if (p->plain_done)
        leave(p);
    else
        bufferevent_enable(p->plain, EV_READ);
}

static void on_tls_event(struct bufferevent *bev, short what, void *arg)
{
    struct tls_pipe *p = arg;
    if (what & BEV_EVENT_CONNECTED) {
        evtimer_del(p->timer); /* the handshake's time; later the flush's */
        tls_peer_cn(bev, p->cn, sizeof(p->cn));
        set_state(p, 1);
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (p->state == 0) { /* the handshake failed */
        tls_bev_error(bev, p->err, sizeof(p->err));
        p->tls_dead = 1;
        set_state(p, -1);
        event_base_loopbreak(p->base);
        return;
    }
    p->tls_done = 1;
    if (what & BEV_EVENT_ERROR) {
        p->tls_dead = 1;
        /* what waits for the client is dropped (on_plain_read), so the
         * connection's end is seen */
        bufferevent_enable(p->plain, EV_READ);
    }
    bufferevent_disable(bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(p->plain)) == 0)
        shutdown(p->plain_fd, SHUT_WR);
    if (p->tls_dead && p->plain_done)
        leave(p);
}

static void on_plain_event(struct bufferevent *bev, short what, void *arg)
{
    struct tls_pipe *p = arg;
    (void)bev;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    p->plain_done = 1;
    if (p->tls_dead || evbuffer_get_length(bufferevent_get_output(p->tls)) == 0) {
        leave(p);
        return;
    }
    /* the last answers go out, within FLUSH_WAIT_S */
    struct timeval tv = {FLUSH_WAIT_S, 0};
    event_add(p->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tls_pipe *p = arg;
    if (p->state == 0) {
        snprintf(p->err, sizeof(p->err), "no TLS handshake in time");
        p->tls_dead = 1;
        set_state(p, -1);
    }
    event_base_loopbreak(p->base);
}

static void *pipe_main(void *arg)
{
    struct tls_pipe *p = arg;
    event_base_dispatch(p->base);
    pthread_mutex_lock(&p->mu);
    p->ended = 1;
    pthread_mutex_unlock(&p->mu);
    set_state(p, -1); /* (when the loop ended during the handshake) */
    return NULL;
}

static void pipe_free(struct tls_pipe *p)
{
    if (p->timer)
        event_free(p->timer);
    if (p->tls)
        bufferevent_free(p->tls); /* closes the client's socket */
    if (p->plain)
        bufferevent_free(p->plain); /* and our end of the pair */
    if (p->base)
        event_base_free(p->base);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int gateway_tls_start(SSL_CTX *ctx, int fd, int64_t wait_ms, int *plain, char *cn, size_t cnlen,
                      struct tls_pipe **out, char *err, size_t errlen)
{
    *out = NULL;
    *plain = -1;
    cn[0] = 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        close(fd);
        return -1;
    }
    struct tls_pipe *p = xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->plain_fd = sv[1];
    p->tls_fd = fd;
    evutil_make_socket_nonblocking(fd);
    evutil_make_socket_nonblocking(sv[1]);
    if (!(p->base = event_base_new()) || !(p->tls = tls_bev_accept(p->base, ctx, fd))) {
        snprintf(err, errlen, "no TLS for the connection");
        if (!p->tls)
            close(fd);
        close(sv[0]);
        close(sv[1]);
        pipe_free(p);
        return -1;
    }
    p->plain = bufferevent_socket_new(p->base, sv[1], BEV_OPT_CLOSE_ON_FREE);
    p->timer = evtimer_new(p->base, on_timer, p);
    struct timeval tv = {(time_t)(wait_ms / 1000), (suseconds_t)(wait_ms % 1000) * 1000};
    if (!p->plain || !p->timer || evtimer_add(p->timer, &tv) < 0) {
        snprintf(err, errlen, "no memory");
        if (!p->plain)
            close(sv[1]);
        close(sv[0]);
        pipe_free(p);
        return -1;
    }
    bufferevent_setcb(p->tls, on_tls_read, on_tls_written, on_tls_event, p);
    bufferevent_setcb(p->plain, on_plain_read, on_plain_written, on_plain_event, p);
    bufferevent_enable(p->tls, EV_READ | EV_WRITE);
    bufferevent_enable(p->plain, EV_READ | EV_WRITE);
    if (pthread_create(&p->t, NULL, pipe_main, p) != 0) {
        snprintf(err, errlen, "no thread for the connection");
        close(sv[0]);
        pipe_free(p);
        return -1;
    }
    /* the handshake, before anything is read: a client certificate may
     * name the token */
    pthread_mutex_lock(&p->mu);
    while (p->state == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    int up = p->state == 1;
    pthread_mutex_unlock(&p->mu);
    if (!up) {
        pthread_join(p->t, NULL);
        snprintf(err, errlen, "%s", p->err[0] ? p->err : "TLS handshake failed");
        close(sv[0]);
        pipe_free(p);
        return -1;
    }
    snprintf(cn, cnlen, "%s", p->cn);
    *plain = sv[0];
    *out = p;
    return 0;
}

void gateway_tls_end(struct tls_pipe *p)
{
    if (!p)
        return;
    /* a client that reads nothing more holds its answers (and the end of
     * the connection behind them) here: after the flush's time, its
     * socket is shut down, and the pipe ends on the error */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += FLUSH_WAIT_S + 2;
    pthread_mutex_lock(&p->mu);
    while (!p->ended && pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0)
        ;
    int ended = p->ended;
    pthread_mutex_unlock(&p->mu);
    if (!ended)
        shutdown(p->tls_fd, SHUT_RDWR);
    pthread_join(p->t, NULL);
    pipe_free(p);
}
