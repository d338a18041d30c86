//! transfer: accounts and money moving between them (the Rust twin of transfer.c).
//! Build: stdb build examples/transfer/transfer.rs -o transfer.wasm
use stdb::*;

table!(#[public] account => Account { #[pk] id: u64, balance: i64 });

reducer!(#[init] fn init() -> Result<(), String> {
    info!("transfer module initialised");
    Ok(())
});

reducer!(fn create_account(id: u64, balance: i64) -> Result<(), String> {
    ensure(balance >= 0, "a new account cannot be in debt")?;
    match Account::insert(Account { id, balance }) {
        Err(e) if e.is_unique_violation() => Err("account already exists".into()),
        Err(_) => Err("insert failed".into()),
        Ok(_) => Ok(()),
    }
});

reducer!(fn transfer(from: u64, to: u64, amount: i64) -> Result<(), String> {
    ensure(amount > 0, "amount must be positive")?;
    let (mut a, mut b) = match (Account::find(from), Account::find(to)) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err("no such account".into()),
    };
    ensure(a.balance >= amount, "insufficient funds")?;
    if from == to { return Ok(()); }
    a.balance -= amount;
    b.balance += amount;
    ensure(Account::update(&a)? && Account::update(&b)?, "update failed")
});

module!(tables: [Account], reducers: [init, create_account, transfer]);
