/* mktd explain: sends events dry with an explanation and prints, per event,
 * the actions it would cause and a line per campaign considered (spec 10). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "lib/util.h"

/* The input's lines, each made dry and explained; lines that are not JSON
 * objects go as they are (the daemon answers them with their error). */
static int build_input(const char *input, struct sbuf *out)
{
    struct sbuf raw = {0};
    const char *p = input;
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    if (*p == '{') { /* the events themselves, on the command line */
        sb_str(&raw, input);
    } else {
        int fd = strcmp(input, "-") == 0 ? 0 : open(input, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "mktd explain: %s: %s\n", input, strerror(errno));
            return -1;
        }
        char buf[1 << 16];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            sb_add(&raw, buf, (size_t)n);
        if (fd)
            close(fd);
    }
    size_t start = 0;
    for (size_t i = 0; i <= raw.len; i++) {
        if (i < raw.len && raw.s[i] != '\n')
            continue;
        size_t n = i - start;
        const char *line = raw.s + start;
        start = i + 1;
        json_t *j = n ? json_loadb(line, n, JSON_ALLOW_NUL, NULL) : NULL;
        if (json_is_object(j)) {
            json_object_set_new(j, "dry", json_true());
            json_object_set_new(j, "explain", json_true());
            char *text = json_dumps(j, JSON_COMPACT);
            sb_str(out, text);
            free(text);
            sb_str(out, "\n");
        } else if (n) {
            sb_add(out, line, n);
            sb_str(out, "\n");
        }
        json_decref(j);
    }
    sb_free(&raw);
    return 0;
}

struct reader {
    struct sbuf line;
    long errors, answers;
};

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void print_entry(json_t *e)
{
    int depth = (int)json_integer_value(json_object_get(e, "depth"));
    const char *timer = json_string_value(json_object_get(e, "timer"));
    printf("  %*s%-24s %-12s", depth * 2, "", str(e, "campaign"), str(e, "outcome"));
    if (timer)
        printf(" timer %s of %s", timer, str(e, "user"));
    json_t *n = json_object_get(e, "actions");
    if (json_is_integer(n))
        printf(" %lld action%s", (long long)json_integer_value(n),
               json_integer_value(n) == 1 ? "" : "s");
    if (*str(e, "detail"))
        printf(" %s", str(e, "detail"));
    json_t *notes = json_object_get(e, "notes");
    size_t i;
    json_t *v;
    json_array_foreach(notes, i, v) printf("%s%s", i ? "; " : " (", json_string_value(v));
    if (json_array_size(notes))
        printf(")");
    printf("\n");
}

static void print_answer(struct reader *r, const char *s, size_t n)
{
    r->answers++;
    json_t *a = json_loadb(s, n, 0, NULL);
    const char *status = str(a, "status");
    json_t *id = json_object_get(a, "id");
    printf("%s: ", json_is_string(id) ? json_string_value(id) : "(no id)");
    if (strcmp(status, "ok") != 0) {
        if (strcmp(status, "duplicate") != 0)
            r->errors++;
        printf("%s", *status ? status : "?");
        if (*str(a, "error"))
            printf(" %s", str(a, "error"));
        if (*str(a, "detail"))
            printf(": %s", str(a, "detail"));
        printf("\n");
        json_decref(a);
        return;
    }
    json_t *acts = json_object_get(a, "actions");
    size_t k = json_array_size(acts);
    printf("%zu action%s\n", k, k == 1 ? "" : "s");
    size_t i;
    json_t *v;
    json_array_foreach(acts, i, v)
    {
        char *payload = json_dumps(json_object_get(v, "payload"), JSON_COMPACT);
        printf("  + %s for %s by %s %s\n", str(v, "kind"), str(v, "user"), str(v, "campaign"),
               payload ? payload : "{}");
        free(payload);
    }
    json_array_foreach(json_object_get(a, "explain"), i, v)
    {
        int depth = (int)json_integer_value(json_object_get(v, "depth"));
        const char *event = str(v, "event");
        json_t *prev = i ? json_array_get(json_object_get(a, "explain"), i - 1) : NULL;
        /* a header where the evaluated event changes */
        if (*event && (!prev || strcmp(str(prev, "event"), event) != 0 ||
                       json_integer_value(json_object_get(prev, "depth")) != depth))
            printf("  %*s%s (depth %d)\n", depth * 2, "", event, depth);
        print_entry(v);
    }
    json_decref(a);
}

static void on_bytes(void *arg, const char *p, size_t n)
{
    struct reader *r = arg;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            sb_add(&r->line, p + i, 1);
            continue;
        }
        print_answer(r, r->line.s ? r->line.s : "", r->line.len);
        r->line.len = 0;
    }
}

int cli_explain(const char *address, const char *input)
{
    struct sbuf out = {0};
    if (build_input(input, &out) < 0)
        return 2;
    struct reader r = {0};
    int rc = cli_exchange("explain", address, -1, out.s ? out.s : "", out.len, on_bytes, &r);
    if (r.line.len)
        print_answer(&r, r.line.s, r.line.len);
    sb_free(&out);
    sb_free(&r.line);
    if (rc)
        return rc;
    return r.errors ? 1 : 0;
}
