/* stdb.h — write stdb modules in C (module ABI v1, docs/abi.md).
 *
 * Include this header in exactly one .c file: it defines functions, the module's exports and
 * the allocator (no libc: modules are wasm32-freestanding). Build with
 *     python -m stdb.module.build module.c -o module.wasm
 *
 * Rows are plain C structs. A table is declared by listing its columns (struct field, type,
 * flags); a reducer by its C function and the struct its arguments decode into:
 *
 *     typedef struct { uint64_t id; int64_t balance; } account_t;
 *     STDB_TABLE(account, account_t, "account", STDB_PUBLIC,
 *         STDB_COL(account_t, id, STDB_U64, STDB_PK),
 *         STDB_COL(account_t, balance, STDB_I64, 0));
 *
 *     typedef struct { uint64_t id; int64_t amount; } deposit_args;
 *     static const char* deposit(const deposit_args* a) {
 *         account_t acc = { .id = a->id };
 *         if (stdb_find(&account, &acc) != 1) return "no such account";
 *         acc.balance += a->amount;
 *         stdb_update(&account, &acc);
 *         return 0;                                    // NULL: success, commit
 *     }
 *     STDB_REDUCER(deposit_r, "deposit", deposit, deposit_args,
 *         STDB_ARG(deposit_args, id, STDB_U64), STDB_ARG(deposit_args, amount, STDB_I64));
 *
 *     STDB_TABLES(&account);
 *     STDB_REDUCERS(&deposit_r);                      // last: defines the exports
 *
 * A reducer returns NULL to commit or an error message to roll back. Column types map to C as
 * bool → bool, iN/uN → intN_t/uintN_t, f32/f64 → float/double, string and bytes → stdb_str
 * (pointer + length; a decoded string points into memory valid until the reducer returns),
 * identity → stdb_identity, timestamp → int64_t (µs since the epoch). option<T> and array<T>
 * columns are not mapped to structs by this SDK (use the raw imports for them).
 */
#ifndef STDB_H
#define STDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ types */

typedef struct { const char* ptr; uint32_t len; } stdb_str;
typedef struct { uint8_t bytes[32]; } stdb_identity;

enum {
    STDB_BOOL = 1, STDB_I8, STDB_I16, STDB_I32, STDB_I64, STDB_U8, STDB_U16, STDB_U32, STDB_U64,
    STDB_F32, STDB_F64, STDB_STRING, STDB_BYTES, STDB_IDENTITY, STDB_TIMESTAMP
};

/* column flags */
#define STDB_PK       1    /* part of the primary key */
#define STDB_AUTO_INC 2    /* 0 on insert takes the next value (integer columns) */
#define STDB_UNIQUE   4    /* a unique hash index named "by_<column>" */
#define STDB_INDEX    8    /* a btree index named "by_<column>" (range scans) */
/* table flags */
#define STDB_PUBLIC   1    /* visible to every client (default: private) */

typedef struct { const char* name; uint8_t type; uint8_t flags; uint16_t offset; } stdb_col;

typedef struct {
    const char* name;
    const stdb_col* cols;
    uint32_t ncols;
    uint32_t flags;
    const char* scheduled;   /* schedule table: the reducer it drives (else NULL) */
    int32_t id;              /* cached table id, -1 until looked up */
} stdb_table;

typedef const char* (*stdb_fn_args)(const void* args);
typedef const char* (*stdb_fn_noargs)(void);

typedef struct {
    const char* name;
    const stdb_col* params;
    uint32_t nparams;
    uint32_t args_size;
    const char* lifecycle;   /* "init", "client_connected", "client_disconnected" or NULL */
    stdb_fn_args fn;
    stdb_fn_noargs fn0;
} stdb_reducer;

#define STDB_COL(T, field, type, flags) { #field, (type), (flags), (uint16_t)offsetof(T, field) }
#define STDB_ARG(T, field, type) STDB_COL(T, field, type, 0)
#define STDB__N(arr) ((uint32_t)(sizeof(arr) / sizeof((arr)[0])))

#define STDB_TABLE(var, T, name, tflags, ...)                                               \
    static const stdb_col var##__cols[] = { __VA_ARGS__ };                                   \
    static stdb_table var = { name, var##__cols, STDB__N(var##__cols), (tflags), 0, -1 }

/* A schedule table (docs/abi.md): T starts with uint64_t scheduled_id, int64_t scheduled_at,
 * uint64_t repeat_us; the columns after those are the table's own. */
#define STDB_SCHEDULE_TABLE(var, T, name, reducer_name, ...)                                 \
    static const stdb_col var##__cols[] = {                                                  \
        STDB_COL(T, scheduled_id, STDB_U64, STDB_PK | STDB_AUTO_INC),                        \
        STDB_COL(T, scheduled_at, STDB_TIMESTAMP, 0),                                        \
        STDB_COL(T, repeat_us, STDB_U64, 0), __VA_ARGS__ };                                  \
    static stdb_table var = { name, var##__cols, STDB__N(var##__cols), 0, reducer_name, -1 }

#define STDB_REDUCER(var, name, fn, ArgsT, ...)                                              \
    static const stdb_col var##__params[] = { __VA_ARGS__ };                                 \
    static const stdb_reducer var = { name, var##__params, STDB__N(var##__params),           \
                                      sizeof(ArgsT), 0, (stdb_fn_args)(fn), 0 }

#define STDB_REDUCER_NOARGS(var, name, fn) \
    static const stdb_reducer var = { name, 0, 0, 0, 0, 0, (fn) }

#define STDB_LIFECYCLE(var, kind, fn) \
    static const stdb_reducer var = { kind, 0, 0, 0, kind, 0, (fn) }

/* The reducer a schedule table drives: called with the table's row (struct T). */
#define STDB_SCHEDULED_REDUCER(var, name, fn, T, table_var)                                  \
    static const stdb_reducer var = { name, table_var##__cols, STDB__N(table_var##__cols),   \
                                      sizeof(T), 0, (stdb_fn_args)(fn), 0 }

/* ------------------------------------------------------------------ imports (docs/abi.md) */

#define STDB__IMPORT(name) __attribute__((import_module("stdb"), import_name(#name)))
STDB__IMPORT(table_id) int32_t stdb_sys_table_id(const char* name, uint32_t len);
STDB__IMPORT(index_id) int32_t stdb_sys_index_id(int32_t table, const char* name, uint32_t len);
STDB__IMPORT(insert) int32_t stdb_sys_insert(int32_t table, uint8_t* row, uint32_t len);
STDB__IMPORT(update) int32_t stdb_sys_update(int32_t table, const uint8_t* row, uint32_t len);
STDB__IMPORT(delete) int32_t stdb_sys_delete(int32_t table, int32_t index, const uint8_t* key, uint32_t len);
STDB__IMPORT(seek) int32_t stdb_sys_seek(int32_t table, int32_t index, const uint8_t* key, uint32_t len);
STDB__IMPORT(find) int32_t stdb_sys_find(int32_t table, int32_t index, const uint8_t* key, uint32_t len,
                                         uint8_t* buf, uint32_t cap);
STDB__IMPORT(range) int32_t stdb_sys_range(int32_t table, int32_t index, const uint8_t* lo, uint32_t lo_len,
                                           const uint8_t* hi, uint32_t hi_len, uint32_t flags);
STDB__IMPORT(scan) int32_t stdb_sys_scan(int32_t table);
STDB__IMPORT(iter_next) int32_t stdb_sys_iter_next(int32_t iter, uint8_t* buf, uint32_t cap);
STDB__IMPORT(iter_close) int32_t stdb_sys_iter_close(int32_t iter);
STDB__IMPORT(log) void stdb_sys_log(int32_t level, const char* msg, uint32_t len);
STDB__IMPORT(sender) void stdb_sys_sender(uint8_t* out32);
STDB__IMPORT(connection_id) void stdb_sys_connection_id(uint8_t* out16);
STDB__IMPORT(timestamp) int64_t stdb_sys_timestamp(void);
STDB__IMPORT(random_seed) int64_t stdb_sys_random_seed(void);
STDB__IMPORT(error_detail) int32_t stdb_sys_error_detail(char* buf, uint32_t cap);

enum {
    STDB_ERR_NO_SUCH_TABLE = -1, STDB_ERR_NO_SUCH_INDEX = -2, STDB_ERR_BAD_ROW = -3,
    STDB_ERR_UNIQUE_VIOLATION = -4, STDB_ERR_NO_SUCH_ITER = -5, STDB_ERR_BUFFER_TOO_SMALL = -6,
    STDB_ERR_ROW_TOO_LARGE = -7, STDB_ERR_WRONG_INDEX_KIND = -8, STDB_ERR_BAD_ARGUMENT = -9,
    STDB_ERR_NO_TRANSACTION = -10, STDB_ERR_TOO_MANY_ITERS = -11
};
enum { STDB_LOG_ERROR = 0, STDB_LOG_WARN, STDB_LOG_INFO, STDB_LOG_DEBUG, STDB_LOG_TRACE };

/* ------------------------------------------------------------------ memory */

extern unsigned char __heap_base;
static uintptr_t stdb__top;     /* next free byte */
static uintptr_t stdb__mark;    /* where each call's allocations start */

void* memcpy(void* dst, const void* src, size_t n) {
    unsigned char* d = dst; const unsigned char* s = src;
    while (n--) *d++ = *s++;
    return dst;
}
void* memset(void* dst, int c, size_t n) {
    unsigned char* d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

/* Bump allocation, growing linear memory as needed; traps when memory is exhausted (the
 * host's memory cap): the reducer's call fails, nothing else. Freed when the call ends. */
static void* stdb_alloc(uint32_t n) {
    if (!stdb__top) stdb__top = stdb__mark = ((uintptr_t)&__heap_base + 7) & ~(uintptr_t)7;
    uintptr_t at = stdb__top, end = at + ((n + 7) & ~7u);
    uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
    if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) == (size_t)-1)
        __builtin_trap();
    stdb__top = end;
    return (void*)at;
}

__attribute__((export_name("stdb_alloc"))) uint32_t stdb__export_alloc(uint32_t n) {
    return (uint32_t)(uintptr_t)stdb_alloc(n);
}

static uint32_t stdb_strlen(const char* s) { uint32_t n = 0; while (s[n]) n++; return n; }
static stdb_str stdb_s(const char* s) { stdb_str r = { s, stdb_strlen(s) }; return r; }
static bool stdb_str_eq(stdb_str a, const char* b) {
    uint32_t n = stdb_strlen(b);
    if (a.len != n) return false;
    for (uint32_t i = 0; i < n; i++) if (a.ptr[i] != b[i]) return false;
    return true;
}

/* ------------------------------------------------------------------ row codec */

static uint32_t stdb__fixed(uint8_t type) {
    switch (type) {
    case STDB_BOOL: case STDB_I8: case STDB_U8: return 1;
    case STDB_I16: case STDB_U16: return 2;
    case STDB_I32: case STDB_U32: case STDB_F32: return 4;
    case STDB_I64: case STDB_U64: case STDB_F64: case STDB_TIMESTAMP: return 8;
    case STDB_IDENTITY: return 32;
    default: return 0;   /* string, bytes: u32 length + bytes */
    }
}

static uint32_t stdb__size(const stdb_col* c, uint32_t n, const void* obj, uint8_t only) {
    uint32_t size = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (only && !(c[i].flags & only)) continue;
        uint32_t w = stdb__fixed(c[i].type);
        size += w ? w : 4 + ((const stdb_str*)((const char*)obj + c[i].offset))->len;
    }
    return size;
}

/* encode the columns of obj (those with a flag in `only`, or all) into out; returns the end */
static uint8_t* stdb__encode(const stdb_col* c, uint32_t n, const void* obj, uint8_t only, uint8_t* out) {
    for (uint32_t i = 0; i < n; i++) {
        if (only && !(c[i].flags & only)) continue;
        const char* f = (const char*)obj + c[i].offset;
        uint32_t w = stdb__fixed(c[i].type);
        if (c[i].type == STDB_BOOL) { *out++ = *(const bool*)f ? 1 : 0; continue; }
        if (w) { memcpy(out, f, w); out += w; continue; }   /* wasm32 is little-endian */
        const stdb_str* s = (const stdb_str*)f;
        memcpy(out, &s->len, 4);
        memcpy(out + 4, s->ptr, s->len);
        out += 4 + s->len;
    }
    return out;
}

/* decode a row into obj; strings point into p. Returns bytes used, or -1 if malformed. */
static int32_t stdb__decode(const stdb_col* c, uint32_t n, void* obj, const uint8_t* p, uint32_t len) {
    uint32_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        char* f = (char*)obj + c[i].offset;
        uint32_t w = stdb__fixed(c[i].type);
        if (c[i].type == STDB_BOOL) { if (pos + 1 > len) return -1; *(bool*)f = p[pos++] != 0; continue; }
        if (w) { if (pos + w > len) return -1; memcpy(f, p + pos, w); pos += w; continue; }
        uint32_t sl;
        if (pos + 4 > len) return -1;
        memcpy(&sl, p + pos, 4);
        if (sl > len - pos - 4) return -1;
        ((stdb_str*)f)->ptr = (const char*)p + pos + 4;
        ((stdb_str*)f)->len = sl;
        pos += 4 + sl;
    }
    return (int32_t)pos;
}

static uint8_t* stdb__row(const stdb_table* t, const void* obj, uint8_t only, uint32_t* len) {
    *len = stdb__size(t->cols, t->ncols, obj, only);
    uint8_t* buf = stdb_alloc(*len ? *len : 1);
    stdb__encode(t->cols, t->ncols, obj, only, buf);
    return buf;
}

/* ------------------------------------------------------------------ tables */

static int32_t stdb_table_id(stdb_table* t) {
    if (t->id < 0) t->id = stdb_sys_table_id(t->name, stdb_strlen(t->name));
    return t->id;
}

/* Insert a row; auto-increment columns given as 0 are filled in `row`. 0 or STDB_ERR_*. */
static int32_t stdb_insert(stdb_table* t, void* row) {
    uint32_t len;
    uint8_t* buf = stdb__row(t, row, 0, &len);
    int32_t r = stdb_sys_insert(stdb_table_id(t), buf, len);
    if (r == 0) stdb__decode(t->cols, t->ncols, row, buf, len);
    return r;
}

/* Replace the row with the same primary key: 1 replaced, 0 none, or STDB_ERR_*. */
static int32_t stdb_update(stdb_table* t, const void* row) {
    uint32_t len;
    uint8_t* buf = stdb__row(t, row, 0, &len);
    return stdb_sys_update(stdb_table_id(t), buf, len);
}

/* Delete the row whose primary key equals row's: 1 deleted, 0 none, or STDB_ERR_*. */
static int32_t stdb_delete(stdb_table* t, const void* row) {
    uint32_t len;
    uint8_t* key = stdb__row(t, row, STDB_PK, &len);
    return stdb_sys_delete(stdb_table_id(t), 0, key, len);
}

typedef struct { stdb_table* t; int32_t h; uint8_t* buf; uint32_t cap, len, pos; } stdb_iter;

static stdb_iter stdb__iter(stdb_table* t, int32_t h) {
    stdb_iter it = { t, h, 0, 0, 0, 0 };
    return it;
}

/* Every row of the table. */
static stdb_iter stdb_scan(stdb_table* t) { return stdb__iter(t, stdb_sys_scan(stdb_table_id(t))); }

/* Rows whose column `col` equals row's value of it (col is the primary key, or a column with
 * STDB_UNIQUE or STDB_INDEX). */
static stdb_iter stdb_filter(stdb_table* t, const char* col, const void* row) {
    int32_t idx = -1;
    const stdb_col* c = 0;
    for (uint32_t i = 0; i < t->ncols; i++) if (stdb_str_eq(stdb_s(t->cols[i].name), col)) c = &t->cols[i];
    if (!c) return stdb__iter(t, STDB_ERR_BAD_ARGUMENT);
    if (c->flags & STDB_PK) idx = 0;
    else {
        uint32_t n = stdb_strlen(col);
        char* name = stdb_alloc(n + 3);
        name[0] = 'b'; name[1] = 'y'; name[2] = '_';
        memcpy(name + 3, col, n);
        idx = stdb_sys_index_id(stdb_table_id(t), name, n + 3);
        if (idx < 0) return stdb__iter(t, idx);
    }
    uint32_t len = stdb__size(c, 1, row, 0);
    uint8_t* key = stdb_alloc(len ? len : 1);
    stdb__encode(c, 1, row, 0, key);
    return stdb__iter(t, stdb_sys_seek(stdb_table_id(t), idx, key, len));
}

/* The next row into `row`: 1 a row, 0 the end, or STDB_ERR_*. */
static int32_t stdb_next(stdb_iter* it, void* row) {
    if (it->h <= 0) return it->h;
    if (it->pos >= it->len) {
        if (!it->buf) { it->cap = 4096; it->buf = stdb_alloc(it->cap); }
        int32_t n = stdb_sys_iter_next(it->h, it->buf, it->cap);
        while (n == STDB_ERR_BUFFER_TOO_SMALL) {           /* one row needs more: grow */
            uint32_t need; memcpy(&need, it->buf, 4);
            it->cap = need > 2 * it->cap ? need : 2 * it->cap;
            it->buf = stdb_alloc(it->cap);
            n = stdb_sys_iter_next(it->h, it->buf, it->cap);
        }
        if (n <= 0) { it->h = 0; return n; }
        it->len = (uint32_t)n;
        it->pos = 0;
    }
    uint32_t rl; memcpy(&rl, it->buf + it->pos, 4);
    if (stdb__decode(it->t->cols, it->t->ncols, row, it->buf + it->pos + 4, rl) < 0) return STDB_ERR_BAD_ROW;
    it->pos += 4 + rl;
    return 1;
}

static void stdb_close(stdb_iter* it) { if (it->h > 0) stdb_sys_iter_close(it->h); it->h = 0; }

/* Look a row up by its primary key (set in `row`); fills `row`: 1 found, 0 not, or STDB_ERR_*.
 * One host call (the `find` import). Strings of the row point into memory valid until the
 * reducer returns. */
static int32_t stdb_find(stdb_table* t, void* row) {
    uint32_t len, cap = 256;
    uint8_t* key = stdb__row(t, row, STDB_PK, &len);
    uint8_t* buf = stdb_alloc(cap);
    int32_t n = stdb_sys_find(stdb_table_id(t), 0, key, len, buf, cap);
    if (n == STDB_ERR_BUFFER_TOO_SMALL) {                 /* a larger row: exactly its size */
        memcpy(&cap, buf, 4);
        buf = stdb_alloc(cap);
        n = stdb_sys_find(stdb_table_id(t), 0, key, len, buf, cap);
    }
    if (n <= 0) return n;
    if (stdb__decode(t->cols, t->ncols, row, buf, (uint32_t)n) < 0) return STDB_ERR_BAD_ROW;
    return 1;
}

/* ------------------------------------------------------------------ context */

static void stdb_log(int32_t level, const char* msg) { stdb_sys_log(level, msg, stdb_strlen(msg)); }
static stdb_identity stdb_sender(void) { stdb_identity id; stdb_sys_sender(id.bytes); return id; }
static int64_t stdb_now(void) { return stdb_sys_timestamp(); }
static bool stdb_identity_eq(const stdb_identity* a, const stdb_identity* b) {
    for (int i = 0; i < 32; i++) if (a->bytes[i] != b->bytes[i]) return false;
    return true;
}

/* ------------------------------------------------------------------ description (JSON) */

static char* stdb__js;                 /* the description being written */
static uint32_t stdb__jlen, stdb__jcap;
static void stdb__emit(const char* s, uint32_t n) {
    if (stdb__jlen + n > stdb__jcap) {
        uint32_t cap = 2 * (stdb__jcap + n) + 256;
        char* grown = stdb_alloc(cap);
        if (stdb__jlen) memcpy(grown, stdb__js, stdb__jlen);
        stdb__js = grown;
        stdb__jcap = cap;
    }
    memcpy(stdb__js + stdb__jlen, s, n);
    stdb__jlen += n;
}
static void stdb__lit(const char* s) { stdb__emit(s, stdb_strlen(s)); }
static void stdb__jstr(const char* s) {        /* a JSON string, escaped */
    static const char hex[] = "0123456789abcdef";
    stdb__lit("\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') { char e[2] = { '\\', (char)ch }; stdb__emit(e, 2); }
        else if (ch < 0x20) { char e[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] }; stdb__emit(e, 6); }
        else stdb__emit((const char*)&ch, 1);
    }
    stdb__lit("\"");
}

static const char* const stdb__type_names[] = {
    "", "bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64", "string",
    "bytes", "identity", "timestamp"
};

static void stdb__columns(const stdb_col* c, uint32_t n, bool with_flags) {
    stdb__lit("[");
    for (uint32_t i = 0; i < n; i++) {
        if (i) stdb__lit(",");
        stdb__lit("{\"name\":"); stdb__jstr(c[i].name);
        stdb__lit(",\"type\":"); stdb__jstr(stdb__type_names[c[i].type]);
        if (with_flags && (c[i].flags & STDB_AUTO_INC)) stdb__lit(",\"auto_inc\":true");
        stdb__lit("}");
    }
    stdb__lit("]");
}

static void stdb__table_json(const stdb_table* t) {
    stdb__lit("{\"name\":"); stdb__jstr(t->name);
    stdb__lit((t->flags & STDB_PUBLIC) ? ",\"public\":true" : ",\"public\":false");
    if (t->scheduled) { stdb__lit(",\"scheduled\":"); stdb__jstr(t->scheduled); }
    stdb__lit(",\"columns\":"); stdb__columns(t->cols, t->ncols, true);
    stdb__lit(",\"primary_key\":[");
    bool first = true;
    for (uint32_t i = 0; i < t->ncols; i++)
        if (t->cols[i].flags & STDB_PK) { if (!first) stdb__lit(","); stdb__jstr(t->cols[i].name); first = false; }
    stdb__lit("],\"indexes\":[");
    first = true;
    for (uint32_t i = 0; i < t->ncols; i++) {
        uint8_t f = t->cols[i].flags;
        if (!(f & (STDB_UNIQUE | STDB_INDEX))) continue;
        if (!first) stdb__lit(",");
        first = false;
        stdb__lit("{\"name\":\"by_"); stdb__lit(t->cols[i].name);
        stdb__lit("\",\"columns\":["); stdb__jstr(t->cols[i].name);
        stdb__lit((f & STDB_UNIQUE) ? "],\"kind\":\"hash\",\"unique\":true}" : "],\"kind\":\"btree\",\"unique\":false}");
    }
    stdb__lit("]}");
}

const char* const* stdb__visibility;        /* a tentative definition: NULL without STDB_VISIBILITY */

static uint64_t stdb__describe(stdb_table* const* tables, uint32_t nt, const stdb_reducer* const* reducers,
                               uint32_t nr) {
    stdb__js = 0;
    stdb__jlen = stdb__jcap = 0;
    stdb__lit("{\"abi\":1,\"tables\":[");
    for (uint32_t i = 0; i < nt; i++) { if (i) stdb__lit(","); stdb__table_json(tables[i]); }
    stdb__lit("],\"reducers\":[");
    for (uint32_t i = 0; i < nr; i++) {
        const stdb_reducer* r = reducers[i];
        if (i) stdb__lit(",");
        stdb__lit("{\"name\":"); stdb__jstr(r->name);
        if (r->lifecycle) { stdb__lit(",\"lifecycle\":"); stdb__jstr(r->lifecycle); }
        stdb__lit(",\"params\":"); stdb__columns(r->params, r->nparams, false);
        stdb__lit("}");
    }
    stdb__lit("]");
    if (stdb__visibility) {
        stdb__lit(",\"visibility\":[");
        for (uint32_t i = 0; stdb__visibility[i]; i++) { if (i) stdb__lit(","); stdb__jstr(stdb__visibility[i]); }
        stdb__lit("]");
    }
    stdb__lit("}");
    return ((uint64_t)(uintptr_t)stdb__js << 32) | stdb__jlen;
}

static const char* stdb__dispatch(const stdb_reducer* r, const uint8_t* args, uint32_t len) {
    if (!r->fn) return r->fn0();
    void* a = stdb_alloc(r->args_size ? r->args_size : 1);
    memset(a, 0, r->args_size);
    int32_t used = stdb__decode(r->params, r->nparams, a, args, len);
    if (used < 0 || (uint32_t)used != len) return "stdb: the arguments do not match the reducer's parameters";
    return r->fn(a);
}

/* Visibility filters (docs/abi.md, docs/sql.md): for everyone but the database's owner, a public
 * table holds only the rows at least one of its filters selects, in every subscription and query:
 *     STDB_VISIBILITY("SELECT * FROM note WHERE owner = :sender");
 * List every filter in one STDB_VISIBILITY (at most one per module, anywhere before STDB_REDUCERS). */
#define STDB_VISIBILITY(...)                                                                 \
    static const char* const stdb__visibility_list[] = { __VA_ARGS__, 0 };                    \
    const char* const* stdb__visibility = stdb__visibility_list

#define STDB_TABLES(...)                                                                     \
    static stdb_table* const stdb__tables[] = { __VA_ARGS__ }

#define STDB_REDUCERS(...)                                                                   \
    static const stdb_reducer* const stdb__reducers[] = { __VA_ARGS__ };                     \
    __attribute__((export_name("stdb_abi_version"))) int32_t stdb__export_version(void) { return 1; } \
    __attribute__((export_name("stdb_describe"))) uint64_t stdb__export_describe(void) {     \
        return stdb__describe(stdb__tables, STDB__N(stdb__tables), stdb__reducers,    \
                                     STDB__N(stdb__reducers));                               \
    }                                                                                        \
    __attribute__((export_name("stdb_call")))                                                \
    uint64_t stdb__export_call(int32_t reducer, const uint8_t* args, uint32_t len) {         \
        const char* err = "stdb: no such reducer";                                           \
        if (reducer >= 0 && (uint32_t)reducer < STDB__N(stdb__reducers))                     \
            err = stdb__dispatch(stdb__reducers[reducer], args, len);                        \
        stdb__top = stdb__mark;                 /* free the call's memory */                 \
        if (!err) return 0;                                                                  \
        uint32_t n = stdb_strlen(err);                                                       \
        if (!n) { err = "error"; n = 5; }                                                    \
        return ((uint64_t)n << 32) | (uint32_t)(uintptr_t)err;                               \
    }

#endif /* STDB_H */
