/* Personal data (spec 14, "Privacy"; docs/operations.md "Personal data"):
 * what forget deletes and rewrites, what export reads, the per-database
 * key behind pseudonyms, and the operations log (`oplog`). SQL only; the
 * engine (engine_forget) brackets a forget in one transaction and calls
 * the plugins' on_forget. */
#ifndef MKTD_STORE_PRIVACY_H
#define MKTD_STORE_PRIVACY_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* "forgotten:" and 32 hex digits: the first 128 bits of HMAC-SHA256 of
 * the user id under the database's key (table `secrets`, 32 random bytes
 * made on first use, inside the caller's transaction if one is open). */
#define PSEUDONYM_PREFIX "forgotten:"
#define PSEUDONYM_LEN (sizeof(PSEUDONYM_PREFIX) - 1 + 32)
int store_pseudonym(struct store *s, const char *user, char out[PSEUDONYM_LEN + 1]);
/* The pseudonym of user under a 32-byte key. 0, or -EIO. */
int store_pseudonym_of(const unsigned char key[32], const char *user, char out[PSEUDONYM_LEN + 1]);
/* Sets the key behind pseudonyms (cluster mode: one key for every shard,
 * derived from the cluster's secret, so that a user has one pseudonym in
 * all of them). 0, or -EIO. */
int store_pseudonym_key_set(struct store *s, const unsigned char key[32]);

/* 1 when a top-level payload key holds user ids (a string or an array of
 * strings) that forget rewrites: referrer, referee, buyer, beneficiary,
 * user, users, member, members, and any key ending in _user or _users
 * (sdk/README.md, "Forgetting"). */
int privacy_user_key(const char *key);

/* In the caller's open transaction: deletes every per_user row of user
 * (profile, counts, state, counters, timers), its failed timers and its
 * logged events, and puts pseudonym for user in actions (the `user`
 * column, and the values of user-id keys in payloads) and in the props of
 * logged events of other users. Event ids stay. *rewritten gets how many
 * action rows changed. 0 or -EIO. */
int store_forget_user(struct store *s, const char *user, const char *pseudonym, int64_t *rewritten);

/* An action about to be recorded that was decided elsewhere (cluster
 * mode: a graph campaign's, delivered through the stream, maybe after the
 * forget message of a user it names): its user and the user ids in its
 * payload's user-id keys that this database forgot (a forget in its
 * oplog) are put as their pseudonyms. *user and *payload (malloc'd) are
 * replaced when one was. 1 when one was, 0 when none, or -EIO. */
int store_forgotten_rewrite(struct store *s, char **user, char **payload);

/* Every row kept about user as one JSON object (malloc'd text):
 * profile, counts, state, counters, timers, failed_timers, actions (its
 * own and those naming it in a user-id key), events (its logged events).
 * 0 or -EIO. */
int store_export_user(struct store *s, const char *user, char **json);

/* Appends a row to oplog; detail is a JSON object's text. 0 or -EIO. */
int store_oplog_add(struct store *s, int64_t at, const char *op, const char *who,
                    const char *detail);
/* A config load in oplog: op "config", detail {"path","hash","result":
 * "ok"|"error","message"?} with hash the configs table's (FNV-1a 64 of
 * the text; text NULL: the file could not be read, no hash). */
int store_oplog_config(struct store *s, int64_t at, const char *who, const char *path,
                       const char *text, size_t len, const char *error);

struct store_oplog {
    int64_t seq, at;
    const char *op, *who, *detail;
};
/* Every oplog row in seq order, on a connection of its own (read-only). */
int store_oplog_list(const char *db_path, void (*cb)(void *arg, const struct store_oplog *r),
                     void *arg, char *err, size_t errlen);

#endif
