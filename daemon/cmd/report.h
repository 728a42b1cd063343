/* mktd report (spec 13 and 18; docs/reports.md). */
#ifndef MKTD_REPORT_H
#define MKTD_REPORT_H

#include <jansson.h>
#include <stdint.h>

struct sbuf;

struct report_opts {
    const char *db_path;     /* NULL: the config's database, else var/mktd.db */
    const char *config_path; /* NULL: the config the database recorded as live at `until` */
    int64_t since, until;    /* [since, until) in ms; 0 and INT64_MAX when open */
    const char *campaign;    /* NULL: every campaign */
};

/* The report as a JSON tree (the --format json output); NULL and err. */
json_t *report_build(const struct report_opts *o, char *err, size_t errlen);
void report_text(json_t *rep, struct sbuf *out);
void report_html(json_t *rep, struct sbuf *out);

/* Unix ms, RFC 3339 or a date (YYYY-MM-DD, its midnight UTC): 0 or -1. */
int report_parse_time(const char *s, int64_t *ms);

/* `mktd report`: 0, or 2 with a message on stderr. */
int cli_report(const char *config_path, const char *db_path, const char *campaign,
               const char *since, const char *until, const char *format, const char *out_path);

/* GET /report (html) and /v1/report: the body in out and the HTTP status
 * (200, 400 for a bad time, 500 when the database cannot be read). */
int report_serve(const char *db_path, const char *since, const char *until, const char *campaign,
                 int html, struct sbuf *out);

#endif
