/* Personal-data requests on the daemon (spec 14, 18): the control lines
 * `{"forget":"USER"}` and `{"export":"USER"}` on a socket, and the bodies
 * of HTTP POST /v1/forget and /v1/export, run through the engine
 * (engine_forget, engine_export) and answered in one line. */
#ifndef MKTD_ADMIN_H
#define MKTD_ADMIN_H

#include <stddef.h>

#include "engine/engine.h"

enum admin_op { ADMIN_NONE = 0, ADMIN_FORGET, ADMIN_EXPORT };

/* Whether line is a control line: a JSON object with a top-level key
 * "forget" or "export" and no "id" (an event with such a key is an event:
 * unknown top-level keys are ignored there). ADMIN_NONE for anything
 * else (an event); otherwise the op, with *user malloc'd, or NULL when the
 * line is malformed (*why says how). */
enum admin_op admin_line(const char *line, size_t len, char **user, const char **why);

/* Runs op for user as who asked, and appends the answer line to out:
 * {"status":"ok","forget":USER,"pseudonym":P} /
 * {"status":"ok","export":{...}} / {"status":"error","error":E,"detail":D}.
 * 0 when it was done, -1 otherwise. */
struct sbuf;
int admin_run(struct engine *e, enum admin_op op, const char *user, const char *who,
              struct sbuf *out);
/* Appends an error answer. */
void admin_error(struct sbuf *out, const char *error, const char *detail);

/* HTTP POST /v1/forget and /v1/export (GET too for an export): the user
 * named by ?user=U or a body {"user":U}, malloc'd, or NULL when neither
 * names one of 1-128 bytes (answer 400 with ADMIN_HTTP_USER_HELP). */
struct evhttp_request;
char *admin_http_user(struct evhttp_request *req);
#define ADMIN_HTTP_USER_HELP "name the user: ?user=U or a body {\"user\":\"U\"}, 1-128 bytes"

#endif
