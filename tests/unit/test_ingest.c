/* Answers of a batch whose commit failed: ok and duplicate become errors,
 * the rest stays as it was, in order. */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "net/ingest.h"

static char *rewrite(const char *in, int *n)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, in, strlen(in));
    *n = ingest_uncommitted(b, "again");
    size_t len = evbuffer_get_length(b);
    char *out = malloc(len + 1);
    evbuffer_remove(b, out, len);
    out[len] = 0;
    evbuffer_free(b);
    return out;
}

static void test_uncommitted(void)
{
    int n;
    char *out = rewrite("{\"id\":\"e1\",\"status\":\"ok\",\"actions\":2}\n"
                        "{\"id\":null,\"status\":\"error\",\"error\":\"invalid_json\","
                        "\"detail\":\"x\"}\n"
                        "{\"id\":\"a\\\"b\\\\\",\"status\":\"duplicate\"}\n"
                        "{\"id\":\"e3\",\"status\":\"error\",\"error\":\"internal\","
                        "\"detail\":\"plugin\"}\n"
                        "{\"id\":\"\\\\\",\"status\":\"ok\",\"actions\":0}\n",
                        &n);
    CHECK_INT(n, 3);
    CHECK_STR(out, "{\"id\":\"e1\",\"status\":\"error\",\"error\":\"internal\",\"detail\":"
                   "\"again\"}\n"
                   "{\"id\":null,\"status\":\"error\",\"error\":\"invalid_json\","
                   "\"detail\":\"x\"}\n"
                   "{\"id\":\"a\\\"b\\\\\",\"status\":\"error\",\"error\":\"internal\","
                   "\"detail\":\"again\"}\n"
                   "{\"id\":\"e3\",\"status\":\"error\",\"error\":\"internal\","
                   "\"detail\":\"plugin\"}\n"
                   "{\"id\":\"\\\\\",\"status\":\"error\",\"error\":\"internal\",\"detail\":"
                   "\"again\"}\n");
    free(out);

    out = rewrite("", &n);
    CHECK_INT(n, 0);
    CHECK_STR(out, "");
    free(out);

    /* an id that looks like a status does not fool it */
    out = rewrite("{\"id\":\",\\\"status\\\":\\\"ok\\\"\",\"status\":\"error\",\"error\":"
                  "\"invalid_event\",\"detail\":\"d\"}\n",
                  &n);
    CHECK_INT(n, 0);
    free(out);

    /* a dry answer (its actions and explanation included) waits for the
     * commit like any other: not committed, it is internal too */
    out = rewrite("{\"id\":\"q1\",\"status\":\"ok\",\"dry\":true,\"actions\":[{\"kind\":\"k\","
                  "\"payload\":{\"code\":null}}],\"explain\":[]}\n",
                  &n);
    CHECK_INT(n, 1);
    CHECK_STR(out, "{\"id\":\"q1\",\"status\":\"error\",\"error\":\"internal\",\"detail\":"
                   "\"again\"}\n");
    free(out);
}

int main(void)
{
    test_uncommitted();
    return check_done();
}
