/* HMAC-derived random_for bytes (engine/derive.h). */
#include "engine/derive.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "lib/util.h"

static void put_u32(struct sbuf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    sb_add(b, (const char *)x, 4);
}

static void put_i64(struct sbuf *b, int64_t v)
{
    uint64_t u = (uint64_t)v;
    put_u32(b, (uint32_t)(u >> 32));
    put_u32(b, (uint32_t)u);
}

static void put_str(struct sbuf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_u32(b, (uint32_t)n);
    if (n)
        sb_add(b, s, n);
}

int derive_bytes(const void *key, size_t key_len, const struct derive_id *id, void *out, size_t len)
{
    struct sbuf m = {0};
    put_u32(&m, id->partition);
    char kind = (char)id->kind;
    sb_add(&m, &kind, 1);
    if (id->kind == DERIVE_EVENT) {
        put_str(&m, id->event_id);
    } else if (id->kind == DERIVE_TIMER) {
        put_str(&m, id->timer_campaign);
        put_str(&m, id->timer_user);
        put_str(&m, id->timer_name);
        put_i64(&m, id->due_or_now);
    } else {
        put_i64(&m, id->due_or_now);
    }
    put_str(&m, id->campaign);
    put_u32(&m, id->counter);
    size_t base = m.len;
    unsigned char *p = out;
    int rc = 0;
    for (uint32_t block = 0; len > 0; block++) {
        m.len = base;
        put_u32(&m, block);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)m.s, m.len, md,
                  &md_len) ||
            md_len == 0) {
            rc = -EIO;
            break;
        }
        size_t k = len < md_len ? len : md_len;
        memcpy(p, md, k);
        p += k;
        len -= k;
    }
    sb_free(&m);
    return rc;
}
