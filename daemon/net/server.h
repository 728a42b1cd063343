/* The daemon: listeners, connections, batches, HTTP, signals, reload. */
#ifndef MKTD_SERVER_H
#define MKTD_SERVER_H

/* Runs the daemon with the config at path until SIGTERM/SIGINT. Returns the
 * process exit code. */
int server_run(const char *config_path);

/* GET /report (html 1) and GET /v1/report (html 0) with the query's since,
 * until and campaign (each NULL when absent): the report of the database
 * at db_path into out; returns the HTTP status. The command line sets it
 * (cmd/report.c) before server_run; without it the routes answer 404. */
struct sbuf;
typedef int (*server_report_fn)(const char *db_path, const char *since, const char *until,
                                const char *campaign, int html, struct sbuf *out);
void server_set_report(server_report_fn fn);

#endif
