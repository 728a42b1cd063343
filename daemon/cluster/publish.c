/* mktd publish: NDJSON events into the partitions of the events stream.
 *
 * Lines are checked as a daemon checks them, then published without
 * waiting (up to WINDOW in flight); JetStream's acknowledgements arrive on
 * the library's threads, in any order, and are matched to their lines by
 * message. Answers are written in input order as soon as every line before
 * them has its answer. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "cluster/internal.h"
#include "config/config.h"
#include "engine/event.h"
#include "lib/util.h"
#include "net/admin.h"
#include "net/ingest.h"
#include "store/store.h"

#define WINDOW 1024
#define TABLE (4 * WINDOW) /* a power of two */

struct slot {
    char *answer; /* NULL until known */
    char *id;     /* the event id (for the answer), NULL for JSON null */
    uint32_t partition;
    char msg_id[CLUSTER_MSG_ID_LEN + 1]; /* its Nats-Msg-Id, for publishing it again */
    /* not acknowledged: published again, one by one, at the end */
    char *retry; /* the line, NULL when not to be retried */
    int retry_len;
};

struct pub {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct slot *slots; /* lines base .. base + n - 1 */
    size_t base, n, cap;
    /* messages in flight: message -> line, open addressing */
    struct {
        natsMsg *m;
        size_t line;
    } table[TABLE];
    long ok, dup, err;
    int wake;       /* a gateway's connection: an eventfd told of each acknowledgement; -1 */
    unsigned flags; /* publish_conn.flags */
    int control;    /* publish_conn.control */
    char who[160];  /* publish_conn.who */
};

static size_t hash_ptr(const void *p)
{
    uintptr_t v = (uintptr_t)p;
    v ^= v >> 17;
    v *= 0xed5ad4bbu;
    v ^= v >> 11;
    return (size_t)v & (TABLE - 1);
}

static void table_put(struct pub *p, natsMsg *m, size_t line)
{
    size_t i = hash_ptr(m);
    while (p->table[i].m)
        i = (i + 1) & (TABLE - 1);
    p->table[i].m = m;
    p->table[i].line = line;
}

/* Removes m and returns its line ((size_t)-1 when absent). Backward-shift
 * deletion keeps every probe sequence unbroken. */
static size_t table_take(struct pub *p, natsMsg *m)
{
    size_t i = hash_ptr(m);
    while (p->table[i].m && p->table[i].m != m)
        i = (i + 1) & (TABLE - 1);
    if (!p->table[i].m)
        return (size_t)-1;
    size_t line = p->table[i].line;
    size_t j = i;
    for (;;) {
        p->table[i].m = NULL;
        for (;;) {
            j = (j + 1) & (TABLE - 1);
            if (!p->table[j].m)
                return line;
            size_t home = hash_ptr(p->table[j].m);
            /* move j back to i unless its home lies cyclically in (i, j] */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
                break;
        }
        p->table[i] = p->table[j];
        i = j;
    }
}

static struct slot *slot_of(struct pub *p, size_t line)
{
    return &p->slots[line - p->base];
}

static char *answer_of(const char *id, const char *status, const char *rest)
{
    struct sbuf b = {0};
    sb_str(&b, "{\"id\":");
    sb_json_str_or_null(&b, id);
    sb_fmt(&b, ",\"status\":\"%s\"%s}\n", status, rest);
    return b.s;
}

static char *error_answer(const char *id, const char *error, const char *detail)
{
    struct sbuf r = {0};
    sb_fmt(&r, ",\"error\":\"%s\",\"detail\":", error);
    sb_json_str(&r, detail, strlen(detail));
    char *a = answer_of(id, "error", r.s);
    sb_free(&r);
    return a;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    struct pub *p = closure;
    pthread_mutex_lock(&p->mu);
    size_t line = table_take(p, msg);
    if (line != (size_t)-1) {
        struct slot *s = slot_of(p, line);
        char rest[96];
        if (pa) {
            snprintf(rest, sizeof(rest), ",\"partition\":%" PRIu32 ",\"seq\":%" PRIu64,
                     s->partition, pa->Sequence);
            s->answer = answer_of(s->id, pa->Duplicate ? "duplicate" : "ok", rest);
            pa->Duplicate ? p->dup++ : p->ok++;
        } else if (pae && cluster_transient(pae->Err)) {
            /* a leader election or a reconnect: the same Nats-Msg-Id is
             * published again at the end, so it is never stored twice */
            s->retry_len = natsMsg_GetDataLength(msg);
            s->retry = xmalloc((size_t)s->retry_len + 1);
            memcpy(s->retry, natsMsg_GetData(msg), (size_t)s->retry_len);
        } else {
            char detail[256];
            snprintf(detail, sizeof(detail), "not stored: %s%s%s",
                     natsStatus_GetText(pae ? pae->Err : NATS_ERR), pae && pae->ErrText ? ": " : "",
                     pae && pae->ErrText ? pae->ErrText : "");
            s->answer = error_answer(s->id, "internal", detail);
            p->err++;
        }
        pthread_cond_broadcast(&p->cv);
        if (p->wake >= 0) {
            uint64_t one = 1;
            ssize_t w = write(p->wake, &one, sizeof(one));
            (void)w; /* a full counter is a wake-up all the same */
        }
    }
    pthread_mutex_unlock(&p->mu);
    natsMsg_Destroy(msg);
}

/* Writes the answers that are ready, in order (called with the lock). */
static void flush_ready(struct pub *p, FILE *out)
{
    size_t k = 0;
    while (k < p->n && p->slots[k].answer) {
        fputs(p->slots[k].answer, out);
        free(p->slots[k].answer);
        free(p->slots[k].id);
        k++;
    }
    if (k) {
        memmove(p->slots, p->slots + k, (p->n - k) * sizeof(*p->slots));
        p->n -= k;
        p->base += k;
    }
}

/* A new line's slot (called with the lock). */
static size_t add_slot(struct pub *p)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 256;
        p->slots = xrealloc(p->slots, p->cap * sizeof(*p->slots));
    }
    memset(&p->slots[p->n], 0, sizeof(*p->slots));
    return p->base + p->n++;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

/* How long a dry run waits for a partition's owner (one may be taking
 * the partition over). */
#define DRY_WAIT_MS 10000
/* How long a real event's explanation is waited for after the event is
 * stored, beyond cluster.takeover (its owner may be catching up). */
#define EXPLAIN_WAIT_MS 30000

/* A dry line asked of the owner behind subject (explained, whatever the
 * line says, for HTTP ?explain=1): its answer line, or NULL and *st. */
static char *dry_ask(struct cluster *c, const char *subject, const struct event *ev,
                     const char *line, size_t len, natsStatus *st)
{
    return cluster_ask(c, subject, ev->explain ? CLUSTER_EXPLAIN_HEADER : NULL, "1", line, len,
                       DRY_WAIT_MS, st);
}

/* The graph's actions and explanations appended to the partition's (both
 * answers "ok"); the partition's answer as it is otherwise. */
static char *dry_merge(char *part, const char *graph)
{
    json_t *a = json_loads(part, 0, NULL), *g = json_loads(graph, 0, NULL);
    const char *sa = a ? json_string_value(json_object_get(a, "status")) : NULL;
    const char *sg = g ? json_string_value(json_object_get(g, "status")) : NULL;
    char *out = NULL;
    if (sa && sg && strcmp(sa, "ok") == 0 && strcmp(sg, "ok") == 0) {
        static const char *const keys[] = {"actions", "explain"};
        for (size_t k = 0; k < 2; k++) {
            json_t *to = json_object_get(a, keys[k]), *from = json_object_get(g, keys[k]);
            if (json_is_array(to) && json_is_array(from))
                json_array_extend(to, from);
        }
        char *d = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (d) {
            out = xmalloc(strlen(d) + 2);
            sprintf(out, "%s\n", d);
            free(d);
        }
    }
    json_decref(a);
    json_decref(g);
    if (!out)
        return part;
    free(part);
    return out;
}

/* A dry line, sent to its partition's owner (mktd.dry.<p>) and the
 * graph's (mktd.dry.graph), which evaluate it and answer as a single
 * daemon would: one answer line, the graph's actions after the
 * partition's; or error internal when an owner did not answer in time. */
static char *dry_run(struct cluster *c, const struct event *ev, int partitions, const char *line,
                     size_t len, const char *echo)
{
    char subject[64], graph[64], detail[200];
    snprintf(subject, sizeof(subject), "%s.%" PRIu32, CLUSTER_DRY_PREFIX,
             cluster_partition(ev->user, strlen(ev->user), partitions));
    snprintf(graph, sizeof(graph), "%s.%s", CLUSTER_DRY_PREFIX, CLUSTER_DRY_GRAPH);
    natsStatus s = NATS_OK;
    char *a = dry_ask(c, subject, ev, line, len, &s);
    if (!a) {
        snprintf(detail, sizeof(detail), "not evaluated: no owner of partition %s answered (%s)",
                 subject + strlen(CLUSTER_DRY_PREFIX) + 1, natsStatus_GetText(s));
        return error_answer(echo, "internal", detail);
    }
    char *g = dry_ask(c, graph, ev, line, len, &s);
    if (!g) {
        free(a);
        snprintf(detail, sizeof(detail), "not evaluated: no owner of the graph answered (%s)",
                 natsStatus_GetText(s));
        return error_answer(echo, "internal", detail);
    }
    a = dry_merge(a, g);
    free(g);
    return a;
}

/* The answer of a stored event (rest: its partition and seq) from its
 * owners' answer lines: its partition's (part; NULL when none came in
 * time) and the graph's (graph; NULL when none was due or came in time),
 * with wait_s, the time they had. "explain" gets the partition's entries,
 * then the graph's; what is missing is said in "detail" ("explain":null
 * when the partition's are). Duplicate when the partition had applied the
 * id before. */
static char *stored_explained(const char *part, const char *graph, int graph_due, int64_t wait_s,
                              const char *echo, const char *rest)
{
    json_t *a = part ? json_loads(part, 0, NULL) : NULL;
    json_t *g = graph ? json_loads(graph, 0, NULL) : NULL;
    const char *sa = json_string_value(json_object_get(a, "status"));
    const char *sg = json_string_value(json_object_get(g, "status"));
    json_t *xa = json_object_get(a, "explain"), *xg = json_object_get(g, "explain");
    char *answer = NULL;
    struct sbuf b = {0}, d = {0};
    sb_str(&b, rest);
    if (sa && strcmp(sa, "duplicate") == 0) {
        answer = answer_of(echo, "duplicate", rest);
        goto out;
    }
    if (!part)
        sb_fmt(&d,
               "stored; not explained: its partition's owner has not applied it within %" PRId64
               " s",
               wait_s);
    else if (!sa || strcmp(sa, "ok") != 0 || !json_is_array(xa))
        sb_fmt(&d, "stored; not explained: %s",
               json_string_value(json_object_get(a, "detail"))
                   ? json_string_value(json_object_get(a, "detail"))
                   : "its partition's owner sent no explanation");
    else if (graph_due && !graph)
        sb_fmt(&d,
               "the graph's campaigns not explained: its owner has not applied it within %" PRId64
               " s",
               wait_s);
    else if (graph && (!sg || strcmp(sg, "ok") != 0 || !json_is_array(xg)))
        sb_fmt(&d, "the graph's campaigns not explained: %s",
               sg && strcmp(sg, "duplicate") == 0 ? "the graph had applied it before"
               : json_string_value(json_object_get(g, "detail"))
                   ? json_string_value(json_object_get(g, "detail"))
                   : "no explanation");
    if (part && json_is_array(xa) && sa && strcmp(sa, "ok") == 0) {
        if (graph && json_is_array(xg) && sg && strcmp(sg, "ok") == 0)
            json_array_extend(xa, xg);
        char *text = json_dumps(xa, JSON_COMPACT | JSON_PRESERVE_ORDER);
        sb_fmt(&b, ",\"explain\":%s", text ? text : "null");
        free(text);
    } else {
        sb_str(&b, ",\"explain\":null");
    }
    if (d.len) {
        sb_str(&b, ",\"detail\":");
        sb_json_str(&b, d.s, d.len);
    }
    answer = answer_of(echo, "ok", b.s);
out:
    sb_free(&b);
    sb_free(&d);
    json_decref(a);
    json_decref(g);
    return answer;
}

/* A real event that asks for its explanation (spec 10 and 18): published
 * as any event, with header CLUSTER_EXPLAIN_TO naming an inbox of this
 * call, and answered once stored and explained: the stored event's answer
 * ({"id","status":"ok","partition","seq"}) with the explanation of its
 * partition's owner, and the graph's after it when a graph campaign runs.
 * Stored but not explained within the wait (its owner behind, or being
 * taken over): the stored answer with "explain":null and a detail. */
static char *explained_run(struct cluster *c, const struct event *ev, int partitions,
                           const char *line, size_t len, const char *echo)
{
    uint32_t part = cluster_partition(ev->user, strlen(ev->user), partitions);
    char subject[64], msg_id[CLUSTER_MSG_ID_LEN + 1], detail[300];
    cluster_event_subject(part, subject, sizeof(subject));
    cluster_msg_id(ev->user, ev->id, msg_id);
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    natsStatus s = natsInbox_Create(&inbox);
    if (s == NATS_OK)
        s = natsConnection_SubscribeSync(&sub, c->nc, inbox);
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    int tries = 0;
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    while (s == NATS_OK) {
        natsMsg *m = NULL;
        s = natsMsg_Create(&m, subject, NULL, line, (int)len);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, CLUSTER_EXPLAIN_TO, inbox);
        if (s == NATS_OK) {
            tries++;
            s = js_PublishMsg(&pa, c->js, m, &po, &jerr);
        }
        natsMsg_Destroy(m);
        if (s == NATS_OK || !cluster_retry_until(deadline, s))
            break;
        s = NATS_OK;
    }
    char *answer = NULL;
    if (s != NATS_OK) {
        cluster_errf(detail, sizeof(detail), "not stored: publishing", s, jerr);
        answer = error_answer(echo, "internal", detail);
        goto out;
    }
    char rest[96];
    snprintf(rest, sizeof(rest), ",\"partition\":%" PRIu32 ",\"seq\":%" PRIu64, part, pa->Sequence);
    if (pa->Duplicate && tries == 1) { /* stored before: not applied again, nothing to
                                           explain (on a later try: our own first one) */
        answer = answer_of(echo, "duplicate", rest);
        goto out;
    }
    /* the partition's answer line, then the graph's when it says so */
    char *got[2] = {NULL, NULL};
    int want_graph = 0;
    int64_t wait = c->cfg->takeover_ms + EXPLAIN_WAIT_MS, until = wall_ms() + wait;
    while (!got[0] || (want_graph && !got[1])) {
        int64_t left = until - wall_ms();
        natsMsg *m = NULL;
        if (left <= 0 || natsSubscription_NextMsg(&m, sub, left) != NATS_OK)
            break;
        const char *by = NULL;
        int graph = natsMsgHeader_Get(m, CLUSTER_EXPLAINED_BY, &by) == NATS_OK && by &&
                    strcmp(by, "graph") == 0;
        if (!got[graph]) {
            got[graph] = xmalloc((size_t)natsMsg_GetDataLength(m) + 1);
            memcpy(got[graph], natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
            got[graph][natsMsg_GetDataLength(m)] = 0;
            if (!graph) {
                json_t *j = json_loads(got[0], 0, NULL);
                want_graph = json_is_true(json_object_get(j, "graph"));
                json_decref(j);
            }
        }
        natsMsg_Destroy(m);
    }
    answer = stored_explained(got[0], got[1], want_graph, wait / 1000, echo, rest);
    free(got[0]);
    free(got[1]);
out:
    jsPubAck_Destroy(pa);
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    return answer;
}

/* A control line's answer (net/admin.h), run through the cluster: a forget
 * to every partition (answered once applied, or "queued"), an export from
 * the owners. */
static char *control_answer(struct cluster *c, struct pub *p, enum admin_op op, const char *user,
                            const char *why)
{
    struct sbuf b = {0};
    if (!user)
        admin_error(&b, "invalid", why);
    else if (p->control == CONTROL_FORBIDDEN)
        admin_error(&b, "forbidden",
                    "forget and export need a Unix socket or a token with scope admin");
    else
        cluster_control(c, op == ADMIN_FORGET, user, p->who, &b);
    return b.s;
}

/* One line: answered at once (an error, a dry run, a control line), or
 * published. -1 when the library refused to publish (the connection is
 * gone). */
static int one_line(struct cluster *c, struct pub *p, int partitions,
                    const struct publish_limits *lim, const char *line, size_t len, char *err,
                    size_t errlen)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (blank(line, len))
        return 0;
    pthread_mutex_lock(&p->mu);
    size_t idx = add_slot(p);
    pthread_mutex_unlock(&p->mu);
    char detail[256] = "", *answer = NULL, *echo = NULL, *user = NULL;
    const char *why = NULL;
    struct event ev;
    enum admin_op op = p->control && (int64_t)len <= lim->max_event_bytes
                           ? admin_line(line, len, &user, &why)
                           : ADMIN_NONE;
    if (op != ADMIN_NONE) {
        answer = control_answer(c, p, op, user, why);
        free(user);
    } else if ((int64_t)len > lim->max_event_bytes) {
        snprintf(detail, sizeof(detail), "line longer than max_event_bytes (%" PRId64 ")",
                 lim->max_event_bytes);
        answer = error_answer(NULL, "too_large", detail);
    } else {
        struct decode_opts o = {.wall_now_ms = wall_ms(),
                                .max_future_ms = lim->max_future_ms,
                                .max_past_ms = lim->max_past_ms};
        enum ev_status st = event_decode(line, len, &o, &ev, detail, sizeof(detail), &echo);
        if (st == EV_OK) { /* the request's flags win over the line's */
            ev.dry |= (p->flags & INGEST_DRY) != 0;
            ev.explain |= (p->flags & INGEST_EXPLAIN) != 0;
        }
        if (st == EV_INVALID_JSON || st == EV_INVALID_EVENT) {
            answer = error_answer(echo, st == EV_INVALID_JSON ? "invalid_json" : "invalid_event",
                                  detail);
        } else if ((p->flags & INGEST_NO_EVENTS) || ((p->flags & INGEST_DRY_ONLY) && !ev.dry)) {
            answer = error_answer(echo, "forbidden",
                                  p->flags & INGEST_NO_EVENTS
                                      ? "this token may not send events (it needs scope events "
                                        "or dry)"
                                      : "this token may send dry events only (scope dry): send "
                                        "it with \"dry\":true");
            event_clear(&ev);
        } else if (ev.dry) {
            /* answered by the partition's owner, not stored */
            answer = dry_run(c, &ev, partitions, line, len, echo);
            event_clear(&ev);
        } else if (ev.explain) {
            /* stored, then answered once its owners explained it */
            answer = explained_run(c, &ev, partitions, line, len, echo);
            event_clear(&ev);
        }
    }
    if (answer) {
        pthread_mutex_lock(&p->mu);
        slot_of(p, idx)->answer = answer;
        slot_of(p, idx)->id = echo;
        if (strstr(answer, "\"status\":\"ok\"")) /* a dry run, an explained event */
            p->ok++;
        else if (strstr(answer, "\"status\":\"duplicate\""))
            p->dup++;
        else
            p->err++;
        pthread_mutex_unlock(&p->mu);
        return 0;
    }
    uint32_t part = cluster_partition(ev.user, strlen(ev.user), partitions);
    char subject[64];
    cluster_event_subject(part, subject, sizeof(subject));
    char msg_id[CLUSTER_MSG_ID_LEN + 1];
    cluster_msg_id(ev.user, ev.id, msg_id);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, line, (int)len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id);
    event_clear(&ev);
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        cluster_errf(err, errlen, "message", s, 0);
        free(echo);
        return -1;
    }
    pthread_mutex_lock(&p->mu);
    slot_of(p, idx)->id = echo;
    slot_of(p, idx)->partition = part;
    memcpy(slot_of(p, idx)->msg_id, msg_id, sizeof(msg_id));
    table_put(p, m, idx);
    pthread_mutex_unlock(&p->mu);
    natsMsg *keep = m;
    /* an acknowledgement lost with a server comes back as a timeout */
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    s = js_PublishMsgAsync(c->js, &m, &po);
    if (s != NATS_OK) {
        pthread_mutex_lock(&p->mu);
        table_take(p, keep);
        slot_of(p, idx)->answer = error_answer(echo, "internal", "not stored: not published");
        p->err++;
        pthread_mutex_unlock(&p->mu);
        natsMsg_Destroy(m);
        cluster_errf(err, errlen, "publish", s, 0);
        return -1;
    }
    return 0;
}

/* The lines whose acknowledgement failed for a passing reason, published
 * again one at a time (with their Nats-Msg-Id: JetStream keeps one). */
static void retry_failed(struct cluster *c, struct pub *p)
{
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    /* by line: a line waiting to be tried again has no answer, so it
     * stays among the slots while answers before it are written */
    pthread_mutex_lock(&p->mu);
    size_t line = p->base;
    pthread_mutex_unlock(&p->mu);
    for (;; line++) {
        pthread_mutex_lock(&p->mu);
        if (line >= p->base + p->n) {
            pthread_mutex_unlock(&p->mu);
            return;
        }
        struct slot s = line < p->base ? (struct slot){0} : *slot_of(p, line);
        pthread_mutex_unlock(&p->mu);
        if (!s.retry)
            continue;
        char subject[64], detail[256], rest[96], *answer;
        cluster_event_subject(s.partition, subject, sizeof(subject));
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = s.msg_id; /* the first attempt's: JetStream keeps one */
        po.MaxWait = 5000;
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        natsStatus st;
        do
            st = js_Publish(&pa, c->js, subject, s.retry, s.retry_len, &po, &jerr);
        while (st != NATS_OK && cluster_retry_until(deadline, st));
        pthread_mutex_lock(&p->mu);
        struct slot *t = slot_of(p, line);
        if (st == NATS_OK) {
            snprintf(rest, sizeof(rest), ",\"partition\":%" PRIu32 ",\"seq\":%" PRIu64,
                     t->partition, pa->Sequence);
            /* a duplicate here is the first attempt, stored though its
             * acknowledgement was lost */
            answer = answer_of(t->id, "ok", rest);
            p->ok++;
        } else {
            snprintf(detail, sizeof(detail), "not stored: %s", natsStatus_GetText(st));
            answer = error_answer(t->id, "internal", detail);
            p->err++;
        }
        t->answer = answer;
        free(t->retry);
        t->retry = NULL;
        pthread_mutex_unlock(&p->mu);
        jsPubAck_Destroy(pa);
    }
}

/* Whether a line waits to be tried again (called with the lock). */
static int retry_waiting(struct pub *p)
{
    for (size_t k = 0; k < p->n; k++)
        if (p->slots[k].retry)
            return 1;
    return 0;
}

/* A gateway's connection between reads: waits up to 250 ms for input
 * while writing the answers whose acknowledgements came and publishing
 * again the lines whose acknowledgement failed for a passing reason. 1
 * input (or its end) is there, 0 not yet, -1 (err) the client is gone. */
static int wait_live(struct cluster *c, struct pub *p, int fd, FILE *out, char *err, size_t errlen)
{
    struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = p->wake, .events = POLLIN}};
    if (poll(pf, p->wake >= 0 ? 2 : 1, 250) < 0 && errno != EINTR) {
        snprintf(err, errlen, "waiting for events: %s", strerror(errno));
        return -1;
    }
    if (pf[1].revents & POLLIN) {
        uint64_t v;
        ssize_t rd = read(p->wake, &v, sizeof(v));
        (void)rd;
    }
    if (pf[0].revents & (POLLIN | POLLHUP | POLLERR))
        return 1;
    pthread_mutex_lock(&p->mu);
    int redo = retry_waiting(p);
    pthread_mutex_unlock(&p->mu);
    if (redo)
        retry_failed(c, p);
    pthread_mutex_lock(&p->mu);
    flush_ready(p, out);
    pthread_mutex_unlock(&p->mu);
    if (fflush(out) != 0) {
        snprintf(err, errlen, "writing the answers: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int cluster_check_partitions(struct cluster *c, char *err, size_t errlen)
{
    kvStore *meta = NULL;
    if (cluster_bucket(c, "meta", 0, &meta, 0, err, errlen) < 0)
        return -1;
    int partitions = cluster_stored_partitions(c, meta, err, errlen);
    kvStore_Destroy(meta);
    if (partitions >= 0 && partitions != c->cfg->partitions) {
        snprintf(err, errlen,
                 "stream %s has %d partitions; cluster.partitions says %d (fixed for a stream's "
                 "life)",
                 c->cfg->stream, partitions, c->cfg->partitions);
        return -1;
    }
    return partitions;
}

int cluster_publish(struct cluster *c, int fd, const struct publish_limits *lim,
                    const struct publish_conn *conn, FILE *out, long *n_ok, long *n_dup,
                    long *n_err, char *err, size_t errlen)
{
    int rc = 0, settled = 1;
    int partitions =
        conn && conn->partitions > 0 ? conn->partitions : cluster_check_partitions(c, err, errlen);
    if (partitions < 0)
        return -1;
    struct pub *p = xcalloc(1, sizeof(*p));
    p->wake = conn && !conn->pre_only ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
    p->flags = conn ? conn->flags : 0;
    p->control = conn ? conn->control : CONTROL_RUN;
    if (conn && conn->who)
        snprintf(p->who, sizeof(p->who), "%s", conn->who);
    else
        snprintf(p->who, sizeof(p->who), "cli:uid:%u", (unsigned)getuid());
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    /* a second JetStream context: its acknowledgements come to this pub */
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 10000;
    jo.PublishAsync.MaxPending = WINDOW;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = p;
    jo.PublishAsync.StallWait = 10000;
    natsStatus s = natsConnection_JetStream(&js, c->nc, &jo);
    if (s != NATS_OK) {
        cluster_errf(err, errlen, "JetStream", s, 0);
        rc = -1;
        goto out;
    }
    struct cluster pc = *c;
    pc.js = js;

    struct sbuf in = {0};
    char buf[65536];
    size_t start = 0;
    int pre = conn && conn->pre_len; /* a gateway's bytes read before: lines first */
    if (pre)
        sb_add(&in, conn->pre, conn->pre_len);
    for (;;) {
        ssize_t r = 1, got = 0;
        if (pre) {
            pre = 0;
            if (conn->pre_only)
                r = 0; /* and that is all */
        } else if (conn && conn->pre_only) {
            r = 0; /* an empty body */
        } else {
            int w = conn ? wait_live(&pc, p, fd, out, err, errlen) : 1;
            if (w < 0) {
                rc = -1;
                break;
            }
            if (w == 0)
                continue;
            r = got = read(fd, buf, sizeof(buf));
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "reading the events: %s", strerror(errno));
            rc = -1;
            break;
        }
        if (got > 0)
            sb_add(&in, buf, (size_t)got);
        for (;;) {
            char *nl = in.len > start ? memchr(in.s + start, '\n', in.len - start) : NULL;
            if (!nl && !(r == 0 && start < in.len))
                break;
            size_t end = nl ? (size_t)(nl - in.s) : in.len;
            if (one_line(&pc, p, partitions, lim, in.s + start, end - start, err, errlen) < 0) {
                rc = -1;
                break;
            }
            start = nl ? end + 1 : in.len;
        }
        if (start > 0 && start == in.len) {
            in.len = start = 0;
        } else if (start > (1 << 20)) {
            memmove(in.s, in.s + start, in.len - start);
            in.len -= start;
            start = 0;
        }
        pthread_mutex_lock(&p->mu);
        flush_ready(p, out);
        pthread_mutex_unlock(&p->mu);
        if (conn)
            fflush(out);
        if (r == 0 || rc < 0)
            break;
    }
    sb_free(&in);
    /* every acknowledgement, then the rest of the answers */
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 30000;
    s = js_PublishAsyncComplete(js, &po);
    settled = s == NATS_OK;
    if (s != NATS_OK && rc == 0) {
        cluster_errf(err, errlen, "waiting for JetStream's acknowledgements", s, 0);
        rc = -1;
    }
    retry_failed(c, p);
    pthread_mutex_lock(&p->mu);
    flush_ready(p, out);
    /* lines still without an answer were not acknowledged */
    for (size_t k = 0; k < p->n; k++) {
        if (!p->slots[k].answer) {
            p->slots[k].answer =
                error_answer(p->slots[k].id, "internal", "not stored: no acknowledgement");
            p->err++;
        }
    }
    flush_ready(p, out);
    *n_ok = p->ok;
    *n_dup = p->dup;
    *n_err = p->err;
    pthread_mutex_unlock(&p->mu);
out:
    jsCtx_Destroy(js);
    /* acknowledgements may still run when they were not all waited for:
     * they hold p */
    if (settled) {
        if (p->wake >= 0)
            close(p->wake);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p->slots);
        free(p);
    }
    fflush(out);
    return rc;
}

/* ---- control messages: configs and forgets (spec 18) ---- */

int cluster_publish_all(struct cluster *c, int n, const char *kind, const char *name,
                        const char *value, const char *body, size_t len, uint64_t *seqs, FILE *out,
                        char *err, size_t errlen)
{
    /* the message ids: this call's own (retries within it share them),
     * so that two calls in one millisecond (two forgets from two
     * clients) are not taken for one by the stream's de-duplication */
    int64_t now = wall_ms();
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
        nonce ^= (uint64_t)now * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)&nonce;
    for (int p = 0; p < n; p++) {
        char subject[64], id[160];
        cluster_event_subject((uint32_t)p, subject, sizeof(subject));
        int k = snprintf(id, sizeof(id), "%s:%" PRId64 ":%016" PRIx64 ":%d:", kind, now, nonce, p);
        while (k < 130 && (size_t)k + 1 < sizeof(id))
            id[k++] = '-';
        id[k] = 0;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        natsStatus s;
        int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
        do {
            natsMsg *m = NULL;
            s = natsMsg_Create(&m, subject, NULL, body, (int)len);
            if (s == NATS_OK)
                s = natsMsgHeader_Set(m, name, value);
            if (s == NATS_OK)
                s = js_PublishMsg(&pa, c->js, m, &po, &jerr);
            natsMsg_Destroy(m);
        } while (s != NATS_OK && cluster_retry_until(deadline, s));
        if (s != NATS_OK) {
            char what[64];
            snprintf(what, sizeof(what), "partition %d: publishing the %s", p, kind);
            cluster_errf(err, errlen, what, s, jerr);
            if (p)
                fprintf(out, "%s: published to partitions 0-%d only\n", kind, p - 1);
            return -1;
        }
        seqs[p] = pa->Sequence;
        jsPubAck_Destroy(pa);
    }
    return 0;
}

int cluster_partitions_of(struct cluster *c, char *err, size_t errlen)
{
    kvStore *meta = NULL;
    int n = -1;
    if (cluster_bucket(c, "meta", 0, &meta, 0, err, errlen) == 0)
        n = cluster_stored_partitions(c, meta, err, errlen);
    kvStore_Destroy(meta);
    return n;
}

int cluster_reload(struct cluster *c, const char *text, size_t len, FILE *out, char *err,
                   size_t errlen)
{
    int n = cluster_partitions_of(c, err, errlen);
    if (n < 0)
        return -1;
    char hash[17];
    store_config_hash(text, len, hash);
    uint64_t *seqs = xcalloc((size_t)n, sizeof(*seqs));
    int rc = cluster_publish_all(c, n, "config", CLUSTER_CONFIG_HEADER, hash, text, len, seqs, out,
                                 err, errlen);
    if (rc == 0)
        fprintf(out, "config %s published to %d partitions\n", hash, n);
    free(seqs);
    return rc;
}
