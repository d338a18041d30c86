/* transfer: accounts and money moving between them (the SpacetimeDB keynote benchmark shape).
 * Build: python -m stdb.module.build examples/transfer/transfer.c -o transfer.wasm */
#include "stdb.h"

typedef struct { uint64_t id; int64_t balance; } account_t;
STDB_TABLE(account, account_t, "account", STDB_PUBLIC,
    STDB_COL(account_t, id, STDB_U64, STDB_PK),
    STDB_COL(account_t, balance, STDB_I64, 0));

static const char* init(void) {
    stdb_log(STDB_LOG_INFO, "transfer module initialised");
    return 0;
}

typedef struct { uint64_t id; int64_t balance; } create_args;
static const char* create_account(const create_args* a) {
    account_t acc = { a->id, a->balance };
    if (a->balance < 0) return "a new account cannot be in debt";
    int32_t r = stdb_insert(&account, &acc);
    if (r == STDB_ERR_UNIQUE_VIOLATION) return "account already exists";
    return r == 0 ? 0 : "insert failed";
}

typedef struct { uint64_t from, to; int64_t amount; } transfer_args;
static const char* transfer(const transfer_args* a) {
    if (a->amount <= 0) return "amount must be positive";
    account_t from = { .id = a->from }, to = { .id = a->to };
    if (stdb_find(&account, &from) != 1 || stdb_find(&account, &to) != 1) return "no such account";
    if (from.balance < a->amount) return "insufficient funds";
    if (a->from == a->to) return 0;
    from.balance -= a->amount;
    to.balance += a->amount;
    if (stdb_update(&account, &from) != 1 || stdb_update(&account, &to) != 1) return "update failed";
    return 0;
}

STDB_LIFECYCLE(init_r, "init", init);
STDB_REDUCER(create_r, "create_account", create_account, create_args,
    STDB_ARG(create_args, id, STDB_U64), STDB_ARG(create_args, balance, STDB_I64));
STDB_REDUCER(transfer_r, "transfer", transfer, transfer_args,
    STDB_ARG(transfer_args, from, STDB_U64), STDB_ARG(transfer_args, to, STDB_U64),
    STDB_ARG(transfer_args, amount, STDB_I64));

STDB_TABLES(&account);
STDB_REDUCERS(&init_r, &create_r, &transfer_r);
