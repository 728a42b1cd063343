/* The command line's subcommands (spec section 6). */
#ifndef MKTD_CLI_H
#define MKTD_CLI_H

#include <stdint.h>
#include <stdio.h>

int cli_check(const char *config_path);
/* check, then compare with the config the running daemon loaded: which
 * changes need a restart, which a reload applies. 0 when a reload would
 * apply every change. */
int cli_check_running(const char *config_path, const char *token, const char *ca);
int cli_send(const char *address, const char *file, int verbose);
int cli_actions(const char *db_path, int64_t since, const char *campaign, int follow);
int cli_timers(const char *db_path, int failed);
int cli_explain(const char *address, const char *input);
/* mktd outputs: lists the outputs (cfg, when not NULL, gives their filters
 * for the lag), or with from, rewinds output id to deliver from that seq. */
struct config;
int cli_outputs(const char *db_path, const struct config *cfg, const char *from, const char *id);

/* --token TOKEN (sent first as {"auth":TOKEN}) and --ca FILE (to verify a
 * tls: address's certificate) for cli_exchange; NULL: none. */
void cli_set_auth(const char *token, const char *ca);
/* Sends in_fd's bytes (or buf's, when in_fd < 0) to address while reading
 * the answers into on_bytes; 0, or 2 when it cannot connect or write. */
int cli_exchange(const char *who, const char *address, int in_fd, const char *buf, size_t buf_len,
                 void (*on_bytes)(void *arg, const char *p, size_t n), void *arg);
/* from_db: start from a copy of that database's state (NULL: empty). */
int cli_simulate(const char *config_path, const char *events_path, const char *until,
                 const char *from_db, char **plugin_dirs, size_t n_plugin_dirs);

/* Cluster mode (spec 17, daemon/cmd/cluster.c): sub is "init", "status",
 * "actions", "failed" or "reload"; format "text" (default) or "json". */
int cli_cluster(const char *sub, const char *config_path, const char *format);
/* mktd publish: events from file ("-": standard input) into the stream. */
int cli_publish(const char *config_path, const char *file);

/* Prints actions with seq > since (of one campaign, when not NULL) as
 * NDJSON; returns the last seq printed (or since), or -1 on error. */
struct store;
int64_t print_actions(struct store *st, int64_t since, const char *campaign, FILE *out);

#endif
