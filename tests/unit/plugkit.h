/* The small kit the plugin unit tests share, on the SDK's test kit
 * (mktd/mock.h): events played with ids e1, e2, …; campaigns added that
 * must be accepted or refused; a refusal's errors searched.
 *
 * A test file may define, before including it:
 *   PLUGKIT_ENTRY              the plugin's entry (default mktd_plugin_entry)
 *   PLUGKIT_BEFORE_PLAY()      run before each event (e.g. clearing notes)
 *   PLUGKIT_AFTER_ADD(m, id)   run after a campaign is accepted
 *   PLUGKIT_NOTES              keep the plugin's notes: install plugkit_note
 *                              as the test host's note; every event played
 *                              clears them; CHECK_NOTE(text) looks for text */
#ifndef MKTD_PLUGKIT_H
#define MKTD_PLUGKIT_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mktd/mock.h>

#include "check.h"

#ifdef PLUGKIT_NOTES
static char notes[16384]; /* every note since the last clear, one a line */

static inline void clear_notes(void)
{
    notes[0] = '\0';
}

/* The test host's note: kept, and passed on to the mock host's. */
static inline void plugkit_note(mktd_ctx *ctx, const char *fmt, ...)
{
    char buf[1024];
    size_t len = strlen(notes);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    snprintf(notes + len, sizeof notes - len, "%s\n", buf);
    mktd_mock_host()->note(ctx, "%s", buf);
}

static inline int noted(const char *what)
{
    return strstr(notes, what) != NULL;
}

#define CHECK_NOTE(what)                                                                           \
    do {                                                                                           \
        CHECK(noted(what));                                                                        \
        if (!noted(what))                                                                          \
            fprintf(stderr, "  wanted note '%s' in:\n%s\n", what, notes);                          \
    } while (0)

#ifndef PLUGKIT_BEFORE_PLAY
#define PLUGKIT_BEFORE_PLAY() clear_notes()
#endif
#endif

#ifndef PLUGKIT_ENTRY
#define PLUGKIT_ENTRY mktd_plugin_entry
#endif
#ifndef PLUGKIT_BEFORE_PLAY
#define PLUGKIT_BEFORE_PLAY() ((void)0)
#endif
#ifndef PLUGKIT_AFTER_ADD
#define PLUGKIT_AFTER_ADD(m, id) ((void)0)
#endif

static int ev_seq;

/* Plays one event with the next id; props is a JSON object text or NULL. */
static inline int play(mktd_mock *m, const char *type, const char *user, int64_t ts,
                       const char *props)
{
    char line[2048];
    PLUGKIT_BEFORE_PLAY();
    snprintf(line, sizeof line,
             "{\"id\":\"e%d\",\"type\":\"%s\",\"user\":\"%s\",\"ts\":%" PRId64 "%s%s}", ++ev_seq,
             type, user, ts, props ? ",\"props\":" : "", props ? props : "");
    return mktd_mock_event(m, line);
}

/* The id of the last event played. */
static inline const char *last_id(void)
{
    static char id[16];
    snprintf(id, sizeof id, "e%d", ev_seq);
    return id;
}

/* The last action recorded, or NULL. */
static inline const mktd_mock_action *last(mktd_mock *m)
{
    size_t n = mktd_mock_count(m);
    return n ? mktd_mock_action_at(m, n - 1) : NULL;
}

/* Adds a campaign of the plugin; the test fails when it is refused. */
static inline void add_ok(mktd_mock *m, const char *id, const char *yaml)
{
    int rc = mktd_mock_add(m, PLUGKIT_ENTRY, id, yaml);
    CHECK_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "  errors: %s\n", mktd_mock_errors(m));
    else
        PLUGKIT_AFTER_ADD(m, id);
}

/* Adds a campaign that must be refused; returns its errors (owned by m). */
static inline const char *add_err(mktd_mock *m, const char *yaml)
{
    static int n;
    char id[32];
    snprintf(id, sizeof id, "bad%d", ++n);
    CHECK_INT(mktd_mock_add(m, PLUGKIT_ENTRY, id, yaml), -EINVAL);
    return mktd_mock_errors(m) ? mktd_mock_errors(m) : "";
}

/* Whether errs has a line starting with `where` and containing `what`
 * (any line starting with `where` when what is NULL). */
static inline int has_error(const char *errs, const char *where, const char *what)
{
    const char *p = errs;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        if (len >= sizeof line)
            len = sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        if (strncmp(line, where, strlen(where)) == 0 && (!what || strstr(line, what)))
            return 1;
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

/* A campaign of yaml is refused with an error at `where` saying `what`
 * (needs a mktd_mock *m in scope). */
#define CHECK_ERR(yaml, where, what)                                                               \
    do {                                                                                           \
        const char *e_ = add_err(m, yaml);                                                         \
        CHECK(has_error(e_, where, what));                                                         \
        if (!has_error(e_, where, what))                                                           \
            fprintf(stderr, "  wanted %s ... %s in:\n%s\n", where, what ? what : "", e_);          \
    } while (0)

#endif
