/* A schedule table driving a reducer, written with the C SDK (tests/test_examples.py). */
#include "stdb.h"

typedef struct { uint64_t scheduled_id; int64_t scheduled_at; uint64_t repeat_us; stdb_str note; } tick_t;
typedef struct { uint64_t n; uint64_t sid; int64_t at; stdb_str note; } ticked_t;
STDB_SCHEDULE_TABLE(tick_schedule, tick_t, "tick_schedule", "tick", STDB_COL(tick_t, note, STDB_STRING, 0));
STDB_TABLE(ticks, ticked_t, "ticks", STDB_PUBLIC,
    STDB_COL(ticked_t, n, STDB_U64, STDB_PK | STDB_AUTO_INC), STDB_COL(ticked_t, sid, STDB_U64, STDB_INDEX),
    STDB_COL(ticked_t, at, STDB_TIMESTAMP, 0), STDB_COL(ticked_t, note, STDB_STRING, 0));

static const char* tick(const tick_t* t) {
    ticked_t row = { 0, t->scheduled_id, stdb_now(), t->note };
    return stdb_insert(&ticks, &row) ? "insert failed" : 0;
}
static const char* schedule(const tick_t* t) {
    tick_t row = *t;
    row.scheduled_id = 0;
    return stdb_insert(&tick_schedule, &row) ? "insert failed" : 0;
}
typedef struct { uint64_t sid; } sid_args;
static const char* count_ticks(const sid_args* a) {     /* fails with the count, to read it back */
    ticked_t key = { .sid = a->sid }, row;
    stdb_iter it = stdb_filter(&ticks, "sid", &key);
    static char msg[2] = "0";
    int n = 0;
    while (stdb_next(&it, &row) == 1) n++;
    msg[0] = (char)('0' + n);
    return msg;
}
STDB_SCHEDULED_REDUCER(tick_r, "tick", tick, tick_t, tick_schedule);
STDB_REDUCER(schedule_r, "schedule", schedule, tick_t,
    STDB_ARG(tick_t, scheduled_id, STDB_U64), STDB_ARG(tick_t, scheduled_at, STDB_TIMESTAMP),
    STDB_ARG(tick_t, repeat_us, STDB_U64), STDB_ARG(tick_t, note, STDB_STRING));
STDB_REDUCER(count_r, "count_ticks", count_ticks, sid_args, STDB_ARG(sid_args, sid, STDB_U64));
STDB_TABLES(&tick_schedule, &ticks);
STDB_REDUCERS(&tick_r, &schedule_r, &count_r);
