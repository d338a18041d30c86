//! arena: a small agar.io-like multiplayer game (examples/arena/README.md), the Rust twin of
//! arena.c: same schema, same rules, same randomness (splitmix64 seeded by the call's
//! random_seed), so the same calls give the same game.
use stdb::*;

const WORLD: i32 = 4000;
const FOOD_TARGET: u32 = 300;      // food kept in the world (the schedule row's food_target)
const START_SIZE: i32 = 20;
const MAX_SIZE: i32 = 400;
const TICK_US: u64 = 50_000;       // 20 Hz
const TOP_UP_EVERY: u64 = 100;     // every 100th tick counts the food and tops it up
const DIR_LEN: i32 = 1000;

table!(#[public] player => Player {
    #[pk] id: Identity, name: String, #[index] x: i32, #[index] y: i32, dir_x: i32, dir_y: i32,
    size: i32, score: i32 });
table!(#[public] food => Food { #[pk] #[auto_inc] id: u64, #[index] x: i32, #[index] y: i32 });
table!(#[scheduled = "tick"] tick_schedule => TickSchedule {
    #[pk] #[auto_inc] scheduled_id: u64, scheduled_at: Timestamp, repeat_us: u64, food_target: u32 });

fn rand_coord(rng: &mut Rng) -> i32 { rng.below(WORLD as u64) as i32 }

fn isqrt64(mut v: u64) -> u32 {
    let (mut r, mut bit) = (0u64, 1u64 << 62);
    while bit > v { bit >>= 2; }
    while bit != 0 {
        if v >= r + bit { v -= r + bit; r = (r >> 1) + bit; } else { r >>= 1; }
        bit >>= 2;
    }
    r as u32
}

fn dist2(ax: i32, ay: i32, bx: i32, by: i32) -> i64 {
    let (dx, dy) = (ax as i64 - bx as i64, ay as i64 - by as i64);
    dx * dx + dy * dy
}

fn spawn_food(rng: &mut Rng, n: u32) -> Result<(), String> {
    for _ in 0..n {
        let (x, y) = (rand_coord(rng), rand_coord(rng));
        ensure(Food::insert(Food { id: 0, x, y }).is_ok(), "inserting food failed")?;
    }
    Ok(())
}

fn respawn(p: &mut Player, rng: &mut Rng) {
    p.x = rand_coord(rng);
    p.y = rand_coord(rng);
    p.size = START_SIZE;
    p.score = 0;
}

// ---- lifecycle and client reducers

reducer!(#[init] fn init() -> Result<(), String> {
    let mut rng = Rng::new();
    let t = TickSchedule { scheduled_id: 0, scheduled_at: Timestamp(timestamp().0 + TICK_US as i64),
                           repeat_us: TICK_US, food_target: FOOD_TARGET };
    ensure(TickSchedule::insert(t).is_ok(), "scheduling the tick failed")?;
    spawn_food(&mut rng, FOOD_TARGET)
});

reducer!(#[client_connected] fn client_connected() -> Result<(), String> {
    if Player::find(sender()).is_some() { return Ok(()); }     // a second connection: same player
    let mut rng = Rng::new();
    let mut p = Player { id: sender(), name: String::new(), x: 0, y: 0, dir_x: 0, dir_y: 0, size: 0, score: 0 };
    respawn(&mut p, &mut rng);
    ensure(Player::insert(p).is_ok(), "spawning the player failed")
});

reducer!(#[client_disconnected] fn client_disconnected() -> Result<(), String> {
    ensure(Player::delete(sender()).is_ok(), "removing the player failed")
});

reducer!(fn set_name(name: String) -> Result<(), String> {
    ensure(!name.is_empty() && name.len() <= 32, "a name is 1 to 32 bytes")?;
    let p = Player::find(sender()).ok_or("connect first")?;
    ensure(Player::update(&Player { name, ..p }) == Ok(true), "update failed")
});

reducer!(fn set_direction(dx: i32, dy: i32) -> Result<(), String> {
    ensure((-1_000_000..=1_000_000).contains(&dx) && (-1_000_000..=1_000_000).contains(&dy),
           "dx and dy must be within ±1,000,000")?;
    let mut p = Player::find(sender()).ok_or("connect first")?;
    let len = isqrt64((dx as i64 * dx as i64 + dy as i64 * dy as i64) as u64) as i64;
    let (x, y) = if len == 0 { (0, 0) } else {                  // normalised to length DIR_LEN
        ((dx as i64 * DIR_LEN as i64 / len) as i32, (dy as i64 * DIR_LEN as i64 / len) as i32)
    };
    p.dir_x = x;
    p.dir_y = y;
    ensure(Player::update(&p) == Ok(true), "update failed")
});

// ---- the tick

struct Mob { p: Player, x0: i32, y0: i32, size0: i32, score0: i32, alive: bool }

fn speed(size: i32) -> i32 { 2 + 360 / size }

reducer!(#[scheduled] fn tick(t: TickSchedule) -> Result<(), String> {
    ensure(sender() == Identity([0; 32]), "tick is run by the schedule only")?;
    let mut rng = Rng::new();
    // every player, in primary-key order
    let mut m: Vec<Mob> = Player::iter()
        .map(|p| Mob { x0: p.x, y0: p.y, size0: p.size, score0: p.score, alive: true, p }).collect();
    for e in m.iter_mut() {                                    // move
        let q = &mut e.p;
        let s = speed(q.size);
        q.x = (q.x + s * q.dir_x / DIR_LEN).clamp(0, WORLD - 1);
        q.y = (q.y + s * q.dir_y / DIR_LEN).clamp(0, WORLD - 1);
    }
    // eat food: each player takes the food inside its circle (found by x range, then y)
    let mut eaten = 0u32;
    for e in m.iter_mut() {
        let q = &mut e.p;
        let mut r2 = q.size as i64 * q.size as i64;
        let near: Vec<Food> = Food::range("by_x", Included(q.x - q.size), Included(q.x + q.size)).take(256).collect();
        for f in near {
            if dist2(q.x, q.y, f.x, f.y) >= r2 { continue; }
            if Food::delete(f.id) != Ok(true) { continue; }   // another one ate it first
            eaten += 1;
            q.score += 1;
            if q.size < MAX_SIZE { q.size += 1; }
            r2 = q.size as i64 * q.size as i64;
        }
    }
    // eat players: a player 10%+ bigger eats one whose centre is inside it; the eaten one
    // respawns at once (small, elsewhere). Biggest first; ties in primary-key order.
    let mut order: Vec<usize> = (0..m.len()).collect();
    order.sort_by(|&a, &b| m[b].p.size.cmp(&m[a].p.size));   // stable
    for &i in &order {
        for j in 0..m.len() {
            if !m[i].alive { break; }
            if j == i || !m[j].alive { continue; }
            let (a, b) = (&m[i].p, &m[j].p);
            if (a.size as i64) * 10 < (b.size as i64) * 11 { continue; }
            if dist2(a.x, a.y, b.x, b.y) >= a.size as i64 * a.size as i64 { continue; }
            let grown = isqrt64(a.size as u64 * a.size as u64 + b.size as u64 * b.size as u64);
            let gained = 10 + b.score;
            m[i].p.size = if grown > MAX_SIZE as u32 { MAX_SIZE } else { grown as i32 };
            m[i].p.score += gained;
            respawn(&mut m[j].p, &mut rng);
            m[j].alive = false;                                // respawned: out of this tick's contests
        }
    }
    // write the players that changed
    for e in &m {
        if e.p.x == e.x0 && e.p.y == e.y0 && e.p.size == e.size0 && e.p.score == e.score0 { continue; }
        ensure(Player::update(&e.p) == Ok(true), "updating a player failed")?;
    }
    // food: one new piece for each eaten; every TOP_UP_EVERY ticks, count and top up
    spawn_food(&mut rng, eaten)?;
    if t.repeat_us != 0 && (t.scheduled_at.0 / t.repeat_us as i64) as u64 % TOP_UP_EVERY == 0 {
        let count = Food::iter().count() as u32;
        if count < t.food_target { return spawn_food(&mut rng, t.food_target - count); }
    }
    Ok(())
});

module!(tables: [Player, Food, TickSchedule],
        reducers: [init, client_connected, client_disconnected, tick, set_name, set_direction]);
