//! Every part of the Rust SDK, driven by tests/test_rust_sdk.py.
use stdb::*;

table!(#[public] item => Item {
    #[pk] #[auto_inc] id: u32, #[unique] code: String, #[index] score: i64, #[index] owner: Identity,
    weight: f64, small: f32, flag: bool, tiny: i8, half: u16, data: Vec<u8>, tags: Array<String>,
    label: Option<String>, at: Timestamp });
table!(pair => Pair { #[pk] a: u8, #[pk] b: u16, v: Option<i32> });

fn item(code: &str, score: i64) -> Item {
    Item { id: 0, code: code.into(), score, owner: sender(), weight: score as f64 / 2.0, small: 1.5,
           flag: score % 2 == 0, tiny: -3, half: 65535, data: vec![0, 255], tags: Array(vec!["a".into()]),
           label: if score > 0 { Some(code.into()) } else { None }, at: timestamp() }
}

reducer!(fn add(code: String, score: i64) -> Result<(), String> {
    let it = Item::insert(item(&code, score)).map_err(|e| if e.is_unique_violation() { "duplicate code".into() } else { e.to_string() })?;
    info!("added {} as {}", code, it.id);
    Ok(())
});
reducer!(fn add_then_fail(code: String) -> Result<(), String> {
    Item::insert(item(&code, 1))?;
    Err(format!("failed after adding {}", code))
});
reducer!(fn rescore(id: u32, score: i64) -> Result<(), String> {
    let mut it = Item::find(id).ok_or("no such item")?;
    it.score = score;
    ensure(Item::update(&it)?, "update failed")
});
reducer!(fn remove(id: u32) -> Result<(), String> { ensure(Item::delete(id)?, "no such item") });
reducer!(fn remove_score(score: i64) -> Result<(), String> {
    info!("removed {}", Item::delete_by("by_score", score)?);
    Ok(())
});
reducer!(fn report(lo: i64, hi: i64) -> Result<(), String> {   // fails with what it saw, to read it back
    let all: Vec<u32> = Item::iter().map(|i| i.id).collect();
    let ranged: Vec<i64> = Item::range("by_score", Included(lo), Excluded(hi)).map(|i| i.score).collect();
    let above: Vec<i64> = Item::range::<i64, i64>("by_score", Excluded(lo), Unbounded).map(|i| i.score).collect();
    let mine = Item::filter("by_owner", sender()).count();
    let by_code = Item::find_by("by_code", String::from("b"))?.map(|i| i.id);
    Err(format!("all={:?} range={:?} above={:?} mine={} b={:?}", all, ranged, above, mine, by_code))
});
reducer!(fn pairs(a: u8, b: u16, v: Option<i32>) -> Result<(), String> {
    Pair::insert(Pair { a, b, v })?;
    let got = Pair::find((a, b)).ok_or("pair not found")?;
    let mut it = Pair::range("pk", Included((a,)), Included((a,)));   // the primary key is a hash index
    let n = it.by_ref().count();
    info!("pair {:?} range {} error {:?}", got.v, n, it.error.as_ref().map(|e| e.code));
    Ok(())
});
reducer!(fn context() -> Result<(), String> {
    let mut rng = Rng::new();
    Err(format!("sender={:02x} ts={} seed={} rng={} conn={:02x}", sender().0[0], timestamp().0,
                random_seed(), rng.below(1000), connection_id()[0]))
});
reducer!(fn boom(msg: String) -> Result<(), String> {
    Item::insert(item("boom", 7))?;
    panic!("boom: {}", msg);
});
reducer!(fn bad_index() -> Result<(), String> { Item::filter("by_nothing", 1u32).count(); Ok(()) });
reducer!(fn bad_index_err() -> Result<(), String> { Item::find_by("by_nothing", 1u32)?; Ok(()) });

module!(tables: [Item, Pair], reducers: [add, add_then_fail, rescore, remove, remove_score, report, pairs,
                                        context, boom, bad_index, bad_index_err],
        visibility: ["SELECT * FROM item WHERE owner = :sender"]);
