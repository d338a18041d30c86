//! Misbehaving reducers in Rust (tests/test_rust_hostile.py): each must fail its own call only.
use stdb::*;

table!(#[public] note => Note { #[pk] #[auto_inc] id: u64, text: String });

fn add_note(text: &str) -> Result<(), String> {
    Note::insert(Note { id: 0, text: text.into() })?;
    Ok(())
}

reducer!(fn add(text: String) -> Result<(), String> { add_note(&text) });
reducer!(fn panics(text: String) -> Result<(), String> {
    add_note("before the panic")?;
    let v: Vec<u32> = Vec::new();
    if text.is_empty() { let _ = v[3]; }
    panic!("{}", text);
});
#[inline(never)]
fn deep(n: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(n % 256) as usize] = n as u8;
    let mut next = [0u8; 256];
    next[0] = pad[0];
    1 + deep(n + 1, &mut next) + next[(n % 7) as usize] as u64
}
reducer!(fn recurse(n: u64) -> Result<(), String> {
    add_note("before the recursion")?;
    let mut pad = [0u8; 256];
    Err(format!("{}", deep(n, &mut pad)))
});
reducer!(fn hog(mib: u32) -> Result<(), String> {
    add_note("before the allocation")?;
    let mut keep: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib { keep.push(vec![1u8; 1 << 20]); }
    Err(format!("allocated {} MiB", keep.len()))
});
reducer!(fn spin(n: u64) -> Result<(), String> {
    add_note("before the loop")?;
    let mut x = n;
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        if x == 42 { break; }
    }
    Err(format!("{}", x))
});

module!(tables: [Note], reducers: [add, panics, recurse, hog, spin]);
