/* arena: a small agar.io-like multiplayer game (examples/arena/README.md).
 *
 * Positions are i32 world units in [0, WORLD); a direction is a vector of length 1000 (or 0:
 * standing still). Each player's `size` is its radius. `tick` runs 20 times a second from the
 * schedule table `tick_schedule` (one repeating row, inserted by `init`). Randomness comes from
 * the host's per-call seed (random_seed: the same call gives the same seed), so the game is
 * deterministic given the calls and their timestamps. */
#include "stdb.h"

#define WORLD        4000
#define FOOD_TARGET  300       /* food kept in the world (the schedule row's food_target) */
#define START_SIZE   20
#define MAX_SIZE     400
#define TICK_US      50000     /* 20 Hz */
#define TOP_UP_EVERY 100       /* every 100th tick counts the food and tops it up */
#define DIR_LEN      1000

typedef struct {
    stdb_identity id; stdb_str name; int32_t x, y, dir_x, dir_y, size, score;
} player_t;
typedef struct { uint64_t id; int32_t x, y; } food_t;
typedef struct { uint64_t scheduled_id; int64_t scheduled_at; uint64_t repeat_us; uint32_t food_target; } tick_t;

STDB_TABLE(player, player_t, "player", STDB_PUBLIC,
    STDB_COL(player_t, id, STDB_IDENTITY, STDB_PK), STDB_COL(player_t, name, STDB_STRING, 0),
    STDB_COL(player_t, x, STDB_I32, STDB_INDEX), STDB_COL(player_t, y, STDB_I32, STDB_INDEX),
    STDB_COL(player_t, dir_x, STDB_I32, 0), STDB_COL(player_t, dir_y, STDB_I32, 0),
    STDB_COL(player_t, size, STDB_I32, 0), STDB_COL(player_t, score, STDB_I32, 0));
STDB_TABLE(food, food_t, "food", STDB_PUBLIC,
    STDB_COL(food_t, id, STDB_U64, STDB_PK | STDB_AUTO_INC),
    STDB_COL(food_t, x, STDB_I32, STDB_INDEX), STDB_COL(food_t, y, STDB_I32, STDB_INDEX));
STDB_SCHEDULE_TABLE(tick_schedule, tick_t, "tick_schedule", "tick",
    STDB_COL(tick_t, food_target, STDB_U32, 0));

/* ---- deterministic randomness: splitmix64 seeded by the call's random_seed */

static uint64_t rng_state;
static void rng_begin(void) { rng_state = (uint64_t)stdb_sys_random_seed(); }   /* each call's first */
static uint64_t rng(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int32_t rand_coord(void) { return (int32_t)(rng() % WORLD); }

static uint32_t isqrt64(uint64_t v) {
    uint64_t r = 0, bit = 1ull << 62;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= r + bit) { v -= r + bit; r = (r >> 1) + bit; } else r >>= 1;
        bit >>= 2;
    }
    return (uint32_t)r;
}
static int32_t clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : v > hi ? hi : v; }
static int64_t dist2(int32_t ax, int32_t ay, int32_t bx, int32_t by) {
    int64_t dx = (int64_t)ax - bx, dy = (int64_t)ay - by;
    return dx * dx + dy * dy;
}

static const char* spawn_food(int n) {
    for (int i = 0; i < n; i++) {
        food_t f = { 0, rand_coord(), rand_coord() };
        if (stdb_insert(&food, &f)) return "inserting food failed";
    }
    return 0;
}

/* ---- lifecycle and client reducers */

static const char* init(void) {
    rng_begin();
    tick_t t = { 0, stdb_now() + TICK_US, TICK_US, FOOD_TARGET };
    if (stdb_insert(&tick_schedule, &t)) return "scheduling the tick failed";
    return spawn_food(FOOD_TARGET);
}

static void respawn(player_t* p) {
    p->x = rand_coord(); p->y = rand_coord();
    p->size = START_SIZE; p->score = 0;
}

static const char* connected(void) {
    player_t p = { .id = stdb_sender() };
    if (stdb_find(&player, &p) == 1) return 0;          /* a second connection: same player */
    rng_begin();
    p.name = stdb_s("");
    p.dir_x = p.dir_y = 0;
    respawn(&p);
    return stdb_insert(&player, &p) ? "spawning the player failed" : 0;
}

static const char* disconnected(void) {
    player_t p = { .id = stdb_sender() };
    return stdb_delete(&player, &p) < 0 ? "removing the player failed" : 0;
}

typedef struct { stdb_str name; } name_args;
static const char* set_name(const name_args* a) {
    if (a->name.len == 0 || a->name.len > 32) return "a name is 1 to 32 bytes";
    player_t p = { .id = stdb_sender() };
    if (stdb_find(&player, &p) != 1) return "connect first";
    p.name = a->name;
    return stdb_update(&player, &p) == 1 ? 0 : "update failed";
}

typedef struct { int32_t dx, dy; } dir_args;
static const char* set_direction(const dir_args* a) {
    if (a->dx < -1000000 || a->dx > 1000000 || a->dy < -1000000 || a->dy > 1000000)
        return "dx and dy must be within ±1,000,000";
    player_t p = { .id = stdb_sender() };
    if (stdb_find(&player, &p) != 1) return "connect first";
    uint32_t len = isqrt64((uint64_t)((int64_t)a->dx * a->dx + (int64_t)a->dy * a->dy));
    if (len == 0) { p.dir_x = p.dir_y = 0; }
    else {                                   /* normalised to length DIR_LEN */
        p.dir_x = (int32_t)((int64_t)a->dx * DIR_LEN / len);
        p.dir_y = (int32_t)((int64_t)a->dy * DIR_LEN / len);
    }
    return stdb_update(&player, &p) == 1 ? 0 : "update failed";
}

/* ---- the tick */

typedef struct { player_t p; int32_t x0, y0, size0, score0; bool alive; } mob_t;

static int32_t food_index = -1;

/* ids of the food with x in [lo, hi] (the food.by_x btree index), at most `cap` */
static uint32_t food_in_x(int32_t lo, int32_t hi, food_t* out, uint32_t cap) {
    if (food_index < 0) food_index = stdb_sys_index_id(stdb_table_id(&food), "by_x", 4);
    uint32_t flags = 1u | 2u | 4u | 8u | (1u << 8) | (1u << 16);
    int32_t h = stdb_sys_range(stdb_table_id(&food), food_index, (const uint8_t*)&lo, 4,
                               (const uint8_t*)&hi, 4, flags);
    stdb_iter it = { &food, h, 0, 0, 0, 0 };
    uint32_t n = 0;
    food_t f;
    while (n < cap && stdb_next(&it, &f) == 1) out[n++] = f;
    stdb_close(&it);
    return n;
}

static int32_t speed(int32_t size) { return 2 + 360 / size; }

static const char* tick(const tick_t* t) {
    stdb_identity zero = { { 0 } }, who = stdb_sender();
    if (!stdb_identity_eq(&who, &zero)) return "tick is run by the schedule only";
    rng_begin();

    /* every player, in primary-key order (names copied: the iterator's buffer is reused) */
    uint32_t n = 0, cap = 64;
    mob_t* m = stdb_alloc(cap * sizeof(mob_t));
    stdb_iter it = stdb_scan(&player);
    player_t p;
    while (stdb_next(&it, &p) == 1) {
        if (n == cap) {
            mob_t* grown = stdb_alloc(2 * cap * sizeof(mob_t));
            memcpy(grown, m, n * sizeof(mob_t));
            m = grown; cap *= 2;
        }
        char* name = stdb_alloc(p.name.len ? p.name.len : 1);
        memcpy(name, p.name.ptr, p.name.len);
        p.name.ptr = name;
        mob_t* e = &m[n++];
        e->p = p; e->x0 = p.x; e->y0 = p.y; e->size0 = p.size; e->score0 = p.score; e->alive = true;
    }

    /* move */
    for (uint32_t i = 0; i < n; i++) {
        player_t* q = &m[i].p;
        int32_t s = speed(q->size);
        q->x = clamp(q->x + s * q->dir_x / DIR_LEN, 0, WORLD - 1);
        q->y = clamp(q->y + s * q->dir_y / DIR_LEN, 0, WORLD - 1);
    }

    /* eat food: each player takes the food inside its circle (found by x range, then y) */
    uint32_t eaten = 0;
    food_t near[256];
    for (uint32_t i = 0; i < n; i++) {
        player_t* q = &m[i].p;
        int64_t r2 = (int64_t)q->size * q->size;
        uint32_t k = food_in_x(q->x - q->size, q->x + q->size, near, 256);
        for (uint32_t j = 0; j < k; j++) {
            if (dist2(q->x, q->y, near[j].x, near[j].y) >= r2) continue;
            if (stdb_delete(&food, &near[j]) != 1) continue;     /* another one ate it first */
            eaten++;
            q->score += 1;
            if (q->size < MAX_SIZE) q->size += 1;
            r2 = (int64_t)q->size * q->size;
        }
    }

    /* eat players: a player 10%+ bigger eats one whose centre is inside it; the eaten one
     * respawns at once (small, elsewhere). Biggest first; ties in primary-key order. */
    uint32_t* order = stdb_alloc(n ? n * 4 : 4);        /* by size, biggest first (stable) */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t j = i;
        while (j > 0 && m[order[j - 1]].p.size < m[i].p.size) { order[j] = order[j - 1]; j--; }
        order[j] = i;
    }
    for (uint32_t oi = 0; oi < n; oi++) {
        uint32_t i = order[oi];
        mob_t* a = &m[i];
        for (uint32_t j = 0; j < n && a->alive; j++) {
            mob_t* b = &m[j];
            if (j == i || !b->alive) continue;
            if ((int64_t)a->p.size * 10 < (int64_t)b->p.size * 11) continue;
            if (dist2(a->p.x, a->p.y, b->p.x, b->p.y) >= (int64_t)a->p.size * a->p.size) continue;
            uint32_t grown = isqrt64((uint64_t)a->p.size * a->p.size + (uint64_t)b->p.size * b->p.size);
            a->p.size = grown > MAX_SIZE ? MAX_SIZE : (int32_t)grown;
            a->p.score += 10 + b->p.score;
            respawn(&b->p);
            b->alive = false;                /* respawned: out of this tick's contests */
        }
    }

    /* write the players that changed */
    for (uint32_t i = 0; i < n; i++) {
        mob_t* e = &m[i];
        if (e->p.x == e->x0 && e->p.y == e->y0 && e->p.size == e->size0 && e->p.score == e->score0) continue;
        if (stdb_update(&player, &e->p) != 1) return "updating a player failed";
    }

    /* food: one new piece for each eaten; every TOP_UP_EVERY ticks, count and top up */
    const char* err = spawn_food((int)eaten);
    if (err) return err;
    if (t->repeat_us && (uint64_t)(t->scheduled_at / (int64_t)t->repeat_us) % TOP_UP_EVERY == 0) {
        uint32_t count = 0;
        food_t f;
        stdb_iter all = stdb_scan(&food);
        while (stdb_next(&all, &f) == 1) count++;
        if (count < t->food_target) return spawn_food((int)(t->food_target - count));
    }
    return 0;
}

STDB_LIFECYCLE(init_r, "init", init);
STDB_LIFECYCLE(on_connect, "client_connected", connected);
STDB_LIFECYCLE(on_disconnect, "client_disconnected", disconnected);
STDB_SCHEDULED_REDUCER(tick_r, "tick", tick, tick_t, tick_schedule);
STDB_REDUCER(set_name_r, "set_name", set_name, name_args, STDB_ARG(name_args, name, STDB_STRING));
STDB_REDUCER(set_dir_r, "set_direction", set_direction, dir_args,
    STDB_ARG(dir_args, dx, STDB_I32), STDB_ARG(dir_args, dy, STDB_I32));
STDB_TABLES(&player, &food, &tick_schedule);
STDB_REDUCERS(&init_r, &on_connect, &on_disconnect, &tick_r, &set_name_r, &set_dir_r);
