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
/* Appends an export's answer: {"status":"ok","export":JSON}. */
void admin_export_answer(struct sbuf *out, const char *json);
/* Appends an error answer. */
void admin_error(struct sbuf *out, const char *error, const char *detail);

/* HTTP POST /v1/forget and /v1/export (GET too for an export), before
 * the work: the method (405), scope admin through gate (401, 403) and who
 * asked (the token's name, else "http") into who. 0 when the request was
 * answered already; 1 to go on, with *user the user named by ?user=U or a
 * body {"user":U} (malloc'd), or NULL when none of 1-128 bytes is named
 * (answer 400 with ADMIN_HTTP_USER_HELP). */
struct evhttp_request;
struct auth_gate;
int admin_http_begin(struct auth_gate *gate, struct evhttp_request *req, enum admin_op op,
                     char *who, size_t wholen, char **user);
#define ADMIN_HTTP_USER_HELP "name the user: ?user=U or a body {\"user\":\"U\"}, 1-128 bytes"

#endif
