/* Cluster mode's random_for bytes (engine/derive.h) against values
 * computed apart from mktd, with Python's hmac module:
 *
 *   import hmac, hashlib, struct
 *   def s(x): b = x.encode(); return struct.pack(">I", len(b)) + b
 *   def derive(key, part, kind, fields, campaign, counter, n):
 *       m = (struct.pack(">I", part) + kind.encode() + fields + s(campaign)
 *            + struct.pack(">I", counter))
 *       out, blk = b"", 0
 *       while len(out) < n:
 *           out += hmac.new(key, m + struct.pack(">I", blk), hashlib.sha256).digest()
 *           blk += 1
 *       return out[:n].hex()
 *   k = b"s3cret-key"
 *   derive(k, 5, "e", s("e42"), "welcome", 0, 13)
 *   derive(k, 3, "t", s("winback") + s("u7") + s("attempt")
 *          + struct.pack(">q", 1767229200000), "welcome", 2, 40)
 *   derive(k, 0, "o", struct.pack(">q", 1767225600000), "c", 1, 32)
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "engine/derive.h"

static const char KEY[] = "s3cret-key";

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void check_bytes(const struct derive_id *id, size_t n, const char *want)
{
    unsigned char buf[64];
    char got[130];
    CHECK_INT(derive_bytes(KEY, strlen(KEY), id, buf, n), 0);
    hex(buf, n, got);
    CHECK_STR(got, want);
}

static void test_reference(void)
{
    struct derive_id ev = {.partition = 5,
                           .kind = DERIVE_EVENT,
                           .event_id = "e42",
                           .campaign = "welcome",
                           .counter = 0};
    check_bytes(&ev, 13, "dc52efdd287f344144595493a8");
    /* longer than one HMAC: the next block follows */
    struct derive_id tm = {.partition = 3,
                           .kind = DERIVE_TIMER,
                           .timer_campaign = "winback",
                           .timer_user = "u7",
                           .timer_name = "attempt",
                           .due_or_now = 1767229200000,
                           .campaign = "welcome",
                           .counter = 2};
    check_bytes(&tm, 40,
                "11015f19fb103fe5a46ff385724d36f520fcaabe1fb3c50d7d586ebf1bde2babb24886eb28fd2c8f");
    struct derive_id other = {.partition = 0,
                              .kind = DERIVE_OTHER,
                              .due_or_now = 1767225600000,
                              .campaign = "c",
                              .counter = 1};
    check_bytes(&other, 32, "8609b2bb11036bb968e563b9afea2cb88bcc54f38bf4cd174e5d6916c823e868");
}

/* Every part of the identity changes the bytes; the same identity gives
 * the same bytes; a shorter read is a prefix of a longer one. */
static void test_identity(void)
{
    struct derive_id base = {.partition = 5,
                             .kind = DERIVE_EVENT,
                             .event_id = "e42",
                             .campaign = "welcome",
                             .counter = 0};
    unsigned char a[32], b[32];
    CHECK_INT(derive_bytes(KEY, strlen(KEY), &base, a, sizeof a), 0);
    CHECK_INT(derive_bytes(KEY, strlen(KEY), &base, b, sizeof b), 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK_INT(derive_bytes(KEY, strlen(KEY), &base, b, 5), 0);
    CHECK(memcmp(a, b, 5) == 0);
    struct derive_id v[5];
    for (int i = 0; i < 5; i++)
        v[i] = base;
    v[0].partition = 6;
    v[1].event_id = "e43";
    v[2].campaign = "welcome2";
    v[3].counter = 1;
    v[4].kind = DERIVE_OTHER;
    for (int i = 0; i < 5; i++) {
        CHECK_INT(derive_bytes(KEY, strlen(KEY), &v[i], b, sizeof b), 0);
        CHECK(memcmp(a, b, sizeof a) != 0);
    }
    /* another secret */
    CHECK_INT(derive_bytes("other", 5, &base, b, sizeof b), 0);
    CHECK(memcmp(a, b, sizeof a) != 0);
    /* length-prefixed fields: "ab"+"c" is not "a"+"bc" */
    struct derive_id t1 = {.kind = DERIVE_TIMER,
                           .timer_campaign = "ab",
                           .timer_user = "c",
                           .timer_name = "n",
                           .campaign = "x"};
    struct derive_id t2 = t1;
    t2.timer_campaign = "a";
    t2.timer_user = "bc";
    CHECK_INT(derive_bytes(KEY, strlen(KEY), &t1, a, sizeof a), 0);
    CHECK_INT(derive_bytes(KEY, strlen(KEY), &t2, b, sizeof b), 0);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

int main(void)
{
    test_reference();
    test_identity();
    return check_done();
}
