/* bulk: reducers that insert many rows, or large ones, and replace them, in one transaction:
 * answers and updates larger than a client's max_message, sent in parts (tests/test_parts.py);
 * and one that writes long log lines and fails with a long message. */
#include "stdb.h"

typedef struct { uint64_t id; uint64_t batch; stdb_str body; } blob_t;
STDB_TABLE(blob, blob_t, "blob", STDB_PUBLIC,
    STDB_COL(blob_t, id, STDB_U64, STDB_PK | STDB_AUTO_INC), STDB_COL(blob_t, batch, STDB_U64, STDB_INDEX),
    STDB_COL(blob_t, body, STDB_STRING, 0));

static char text[1 << 20];

typedef struct { uint64_t batch; uint64_t n; uint64_t size; } fill_args;
static const char* fill(const fill_args* a) {
    if (a->size > sizeof text) return "size over 1 MiB";
    for (uint64_t i = 0; i < a->size; i++) text[i] = (char)('a' + i % 26);
    for (uint64_t i = 0; i < a->n; i++) {
        blob_t b = { 0, a->batch, { text, (uint32_t)a->size } };
        if (stdb_insert(&blob, &b)) return "insert failed";
    }
    return 0;
}

/* delete the rows with ids first..last, then fill */
typedef struct { uint64_t first; uint64_t last; uint64_t batch; uint64_t n; uint64_t size; } replace_args;
static const char* replace(const replace_args* a) {
    for (uint64_t id = a->first; id <= a->last; id++) {
        blob_t b = { id, 0, { 0, 0 } };
        if (stdb_delete(&blob, &b) != 1) return "no such row";
    }
    fill_args f = { a->batch, a->n, a->size };
    return fill(&f);
}

STDB_REDUCER(replace_r, "replace", replace, replace_args, STDB_ARG(replace_args, first, STDB_U64),
    STDB_ARG(replace_args, last, STDB_U64), STDB_ARG(replace_args, batch, STDB_U64), STDB_ARG(replace_args, n, STDB_U64),
    STDB_ARG(replace_args, size, STDB_U64));
/* log `lines` lines of `size` bytes, then fail with a message of `size` bytes */
typedef struct { uint64_t lines; uint64_t size; } shout_args;
static const char* shout(const shout_args* a) {
    if (a->size >= sizeof text) return "size over 1 MiB";
    for (uint64_t i = 0; i < a->size; i++) text[i] = (char)('a' + i % 26);
    text[a->size] = 0;
    for (uint64_t i = 0; i < a->lines; i++) stdb_sys_log(STDB_LOG_INFO, text, (uint32_t)a->size);
    return text;
}

STDB_REDUCER(fill_r, "fill", fill, fill_args, STDB_ARG(fill_args, batch, STDB_U64), STDB_ARG(fill_args, n, STDB_U64),
    STDB_ARG(fill_args, size, STDB_U64));
STDB_REDUCER(shout_r, "shout", shout, shout_args, STDB_ARG(shout_args, lines, STDB_U64),
    STDB_ARG(shout_args, size, STDB_U64));
STDB_TABLES(&blob);
STDB_REDUCERS(&fill_r, &replace_r, &shout_r);
