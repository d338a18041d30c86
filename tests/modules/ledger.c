/* ledger: items with quantities, for the whole-Database state machine test
 * (tests/test_database_stateful.py): reducers that commit, fail with a message, trap after
 * writing, and loop past their fuel. */
#include "stdb.h"

typedef struct { uint64_t id; int64_t qty; } item_t;
STDB_TABLE(item, item_t, "item", STDB_PUBLIC,
    STDB_COL(item_t, id, STDB_U64, STDB_PK), STDB_COL(item_t, qty, STDB_I64, STDB_INDEX));

typedef struct { uint64_t id; int64_t qty; } put_args;
static const char* put(const put_args* a) {
    item_t it = { a->id, a->qty };
    item_t old = { .id = a->id };
    if (stdb_find(&item, &old) == 1) return stdb_update(&item, &it) == 1 ? 0 : "update failed";
    return stdb_insert(&item, &it) ? "insert failed" : 0;
}
static const char* take(const put_args* a) {
    item_t it = { .id = a->id };
    if (stdb_find(&item, &it) != 1) return "no such item";
    if (a->qty <= 0) return "take a positive quantity";
    if (it.qty < a->qty) return "not enough";
    it.qty -= a->qty;
    return stdb_update(&item, &it) == 1 ? 0 : "update failed";
}
typedef struct { uint64_t id; } id_args;
static const char* remove_item(const id_args* a) {
    item_t it = { .id = a->id };
    return stdb_delete(&item, &it) == 1 ? 0 : "no such item";
}
/* writes, then traps: the write must roll back */
static const char* boom(const id_args* a) {
    item_t it = { a->id, -1 };
    item_t old = { .id = a->id };
    if (stdb_find(&item, &old) == 1) stdb_update(&item, &it); else stdb_insert(&item, &it);
    __builtin_trap();
    return 0;
}
/* writes, then loops until the fuel runs out */
static const char* spin(const id_args* a) {
    item_t it = { a->id, -2 };
    stdb_insert(&item, &it);
    volatile uint64_t n = 0;
    for (;;) n++;
    return 0;
}
STDB_REDUCER(put_r, "put", put, put_args, STDB_ARG(put_args, id, STDB_U64), STDB_ARG(put_args, qty, STDB_I64));
STDB_REDUCER(take_r, "take", take, put_args, STDB_ARG(put_args, id, STDB_U64), STDB_ARG(put_args, qty, STDB_I64));
STDB_REDUCER(remove_r, "remove", remove_item, id_args, STDB_ARG(id_args, id, STDB_U64));
STDB_REDUCER(boom_r, "boom", boom, id_args, STDB_ARG(id_args, id, STDB_U64));
STDB_REDUCER(spin_r, "spin", spin, id_args, STDB_ARG(id_args, id, STDB_U64));
STDB_TABLES(&item);
STDB_REDUCERS(&put_r, &take_r, &remove_r, &boom_r, &spin_r);
