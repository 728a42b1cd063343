/* mktd forget USER, mktd export USER and mktd oplog (spec 14). */
#ifndef MKTD_CMD_PRIVACY_H
#define MKTD_CMD_PRIVACY_H

enum privacy_op { PRIVACY_FORGET, PRIVACY_EXPORT };

/* Through the daemon at address (or the config's first unix: listen
 * address) when one answers there; else on the database itself (db_path,
 * or the config's). 0, 1 when it was refused or failed, 2 on usage or
 * connection errors. */
int cli_privacy(enum privacy_op op, const char *config_path, const char *db_path,
                const char *address, const char *user);
/* Prints the oplog table (format "text" or "json"; NULL: text). */
int cli_oplog(const char *db_path, const char *format);

#endif
