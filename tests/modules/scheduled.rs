//! The Rust twin of tests/modules/scheduled.c: a schedule table driving a reducer.
use stdb::*;

table!(#[scheduled = "tick"] tick_schedule => TickSchedule {
    #[pk] #[auto_inc] scheduled_id: u64, scheduled_at: Timestamp, repeat_us: u64, note: String });
table!(#[public] ticks => Ticked { #[pk] #[auto_inc] n: u64, #[index] sid: u64, at: Timestamp, note: String });

reducer!(#[scheduled] fn tick(t: TickSchedule) -> Result<(), String> {
    let row = Ticked { n: 0, sid: t.scheduled_id, at: timestamp(), note: t.note };
    ensure(Ticked::insert(row).is_ok(), "insert failed")
});
reducer!(fn schedule(scheduled_id: u64, scheduled_at: Timestamp, repeat_us: u64, note: String) -> Result<(), String> {
    let _ = scheduled_id;
    let row = TickSchedule { scheduled_id: 0, scheduled_at, repeat_us, note };
    ensure(TickSchedule::insert(row).is_ok(), "insert failed")
});
reducer!(fn count_ticks(sid: u64) -> Result<(), String> {     // fails with the count, to read it back
    Err(Ticked::filter("by_sid", sid).count().to_string())
});

module!(tables: [TickSchedule, Ticked], reducers: [tick, schedule, count_ticks]);
