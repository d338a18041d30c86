/* hostile: a module that misbehaves on request (tests/test_hostile_modules.py): loops, deep
 * recursion, memory growth past the cap, a row past the size limit, endless scans of a big table,
 * and lifecycle reducers that trap when the `mode` row says so (init traps when built with
 * -DTRAP_INIT). */
#include "stdb.h"

typedef struct { uint64_t id; stdb_str text; } row_t;
STDB_TABLE(blob, row_t, "blob", STDB_PUBLIC,
    STDB_COL(row_t, id, STDB_U64, STDB_PK | STDB_AUTO_INC), STDB_COL(row_t, text, STDB_STRING, 0));
typedef struct { uint64_t id; bool trap_connect; bool trap_disconnect; } mode_t_;
STDB_TABLE(mode, mode_t_, "mode", STDB_PUBLIC,
    STDB_COL(mode_t_, id, STDB_U64, STDB_PK), STDB_COL(mode_t_, trap_connect, STDB_BOOL, 0),
    STDB_COL(mode_t_, trap_disconnect, STDB_BOOL, 0));

static bool mode_says(int which) {
    mode_t_ m = { .id = 1 };
    if (stdb_find(&mode, &m) != 1) return false;
    return which ? m.trap_disconnect : m.trap_connect;
}
static const char* init(void) {
#ifdef TRAP_INIT
    __builtin_trap();
#endif
    return 0;
}
static const char* connected(void) { if (mode_says(0)) __builtin_trap(); return 0; }
static const char* disconnected(void) { if (mode_says(1)) __builtin_trap(); return 0; }

typedef struct { bool trap_connect; bool trap_disconnect; } mode_args;
static const char* set_mode(const mode_args* a) {
    mode_t_ m = { 1, a->trap_connect, a->trap_disconnect };
    mode_t_ old = { .id = 1 };
    if (stdb_find(&mode, &old) == 1) return stdb_update(&mode, &m) == 1 ? 0 : "update failed";
    return stdb_insert(&mode, &m) ? "insert failed" : 0;
}

typedef struct { stdb_str text; } text_args;
static const char* add(const text_args* a) {
    row_t r = { 0, a->text };
    return stdb_insert(&blob, &r) ? "insert failed" : 0;
}
typedef struct { uint64_t n; } n_args;
static const char* fill(const n_args* a) {
    for (uint64_t i = 0; i < a->n; i++) {
        row_t r = { 0, stdb_s("filler row of the big table") };
        if (stdb_insert(&blob, &r)) return "insert failed";
    }
    return 0;
}
static const char* loop(const n_args* a) {
    row_t r = { 0, stdb_s("written before the loop") };
    stdb_insert(&blob, &r);
    volatile uint64_t n = a->n;
    for (;;) n++;
    return 0;
}
static uint64_t deep(uint64_t n) {        /* a frame the compiler cannot turn into a loop */
    volatile char pad[256];
    pad[n % 256] = (char)n;
    uint64_t r = n == 0 ? 0 : deep(n + 1);
    return r + pad[n % 256];
}
static const char* recurse(const n_args* a) { return deep(a->n + 1) ? "unreachable" : 0; }
static const char* grow(const n_args* a) {
    for (;;) if (__builtin_wasm_memory_grow(0, 16) == (size_t)-1) return "memory.grow refused";
    return 0;
}
static char big[4 << 20];
static const char* huge_row(const n_args* a) {
    for (uint64_t i = 0; i < sizeof big; i++) big[i] = 'x';
    row_t r = { 0, { big, (uint32_t)(a->n < sizeof big ? a->n : sizeof big) } };
    return stdb_insert(&blob, &r) ? "the host refused the row" : 0;
}
static const char* scan_forever(const n_args* a) {
    row_t r = { 0, stdb_s("written before the scans") };
    stdb_insert(&blob, &r);
    for (;;) {
        stdb_iter it = stdb_scan(&blob);
        row_t x;
        while (stdb_next(&it, &x) == 1) {}
        stdb_close(&it);
    }
    return 0;
}
STDB_LIFECYCLE(init_r, "init", init);
STDB_LIFECYCLE(conn_r, "client_connected", connected);
STDB_LIFECYCLE(disc_r, "client_disconnected", disconnected);
STDB_REDUCER(mode_r, "set_mode", set_mode, mode_args,
    STDB_ARG(mode_args, trap_connect, STDB_BOOL), STDB_ARG(mode_args, trap_disconnect, STDB_BOOL));
STDB_REDUCER(add_r, "add", add, text_args, STDB_ARG(text_args, text, STDB_STRING));
STDB_REDUCER(fill_r, "fill", fill, n_args, STDB_ARG(n_args, n, STDB_U64));
STDB_REDUCER(loop_r, "loop", loop, n_args, STDB_ARG(n_args, n, STDB_U64));
STDB_REDUCER(rec_r, "recurse", recurse, n_args, STDB_ARG(n_args, n, STDB_U64));
STDB_REDUCER(grow_r, "grow", grow, n_args, STDB_ARG(n_args, n, STDB_U64));
STDB_REDUCER(huge_r, "huge_row", huge_row, n_args, STDB_ARG(n_args, n, STDB_U64));
STDB_REDUCER(scan_r, "scan_forever", scan_forever, n_args, STDB_ARG(n_args, n, STDB_U64));
STDB_TABLES(&blob, &mode);
STDB_REDUCERS(&init_r, &conn_r, &disc_r, &mode_r, &add_r, &fill_r, &loop_r, &rec_r, &grow_r, &huge_r, &scan_r);
