//! stdb — write stdb modules in Rust (module ABI v1, docs/abi.md; guide: docs/modules-rust.md).
//!
//! ```ignore
//! use stdb::*;
//! table!(#[public] account => Account { #[pk] id: u64, balance: i64 });
//! reducer!(fn deposit(id: u64, amount: i64) -> Result<(), String> {
//!     let mut acc = Account::find(id).ok_or("no such account")?;
//!     acc.balance += amount;
//!     Account::update(&acc)?;
//!     Ok(())
//! });
//! module!(tables: [Account], reducers: [deposit]);
//! ```
//! No dependencies: std's own allocator, `macro_rules!` only. Build with `stdb build m.rs -o m.wasm`.

pub mod codec;
pub mod describe;
pub mod sys;
mod table;

pub use codec::{Array, Column, Identity, Key, Reader, Timestamp};
pub use core::ops::Bound::{self, Excluded, Included, Unbounded};
pub use describe::{describe, ReducerDef};
pub use table::{encode_column, flags, ColumnDef, Error, Iter, Table};

use std::string::String;
use std::vec::Vec;

/// Log levels of the `log` import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3, Trace = 4 }

/// Write a line to the database's log.
pub fn log(level: LogLevel, msg: &str) { unsafe { sys::log(level as i32, msg.as_ptr(), msg.len() as u32) } }

/// `info!("x = {}", x)`: format and log at level info (also `error!`, `warn!`, `debug!`).
#[macro_export]
macro_rules! info { ($($a:tt)*) => { $crate::log($crate::LogLevel::Info, &::std::format!($($a)*)) }; }
#[macro_export]
macro_rules! warn { ($($a:tt)*) => { $crate::log($crate::LogLevel::Warn, &::std::format!($($a)*)) }; }
#[macro_export]
macro_rules! error { ($($a:tt)*) => { $crate::log($crate::LogLevel::Error, &::std::format!($($a)*)) }; }
#[macro_export]
macro_rules! debug { ($($a:tt)*) => { $crate::log($crate::LogLevel::Debug, &::std::format!($($a)*)) }; }

/// `Ok(())` when `cond` holds, else `Err(msg)`: `ensure(amount > 0, "amount must be positive")?`.
pub fn ensure(cond: bool, msg: &str) -> Result<(), String> {
    if cond { Ok(()) } else { Err(String::from(msg)) }
}

/// The caller's identity.
pub fn sender() -> Identity {
    let mut id = Identity([0; 32]);
    unsafe { sys::sender(id.0.as_mut_ptr()) };
    id
}

/// The caller's connection id (zeros when none).
pub fn connection_id() -> [u8; 16] {
    let mut c = [0u8; 16];
    unsafe { sys::connection_id(c.as_mut_ptr()) };
    c
}

/// The transaction's time.
pub fn timestamp() -> Timestamp { Timestamp(unsafe { sys::timestamp() }) }

/// The transaction's random seed (same call, same seed).
pub fn random_seed() -> u64 { unsafe { sys::random_seed() as u64 } }

/// A small deterministic generator (splitmix64) seeded from the transaction: `Rng::new()`.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng { Rng(random_seed()) }
    pub fn from_seed(seed: u64) -> Rng { Rng(seed) }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 { self.next_u64() % n }
}

impl Default for Rng {
    fn default() -> Rng { Rng::new() }
}

// ---------------------------------------------------------------- the exports' machinery

/// A reducer's entry point: its encoded arguments in, success or an error message out.
pub type ReducerFn = fn(&[u8]) -> Result<(), String>;

static mut HOST_ALLOCS: Vec<(usize, usize)> = Vec::new();
static mut LAST_ERROR: Option<String> = None;
static mut DESCRIPTION: Option<String> = None;
static mut HOOKED: bool = false;

/// `stdb_alloc`: memory for the host (freed when the next call returns).
pub fn host_alloc(n: i32) -> i32 {
    let n = n.max(1) as usize;
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(n).is_err() { return 0; }
    let p = v.as_mut_ptr() as usize;
    core::mem::forget(v);
    unsafe { HOST_ALLOCS.push((p, n)) };
    p as i32
}

fn free_host_allocs() {
    unsafe {
        for (p, n) in HOST_ALLOCS.drain(..) {
            drop(Vec::from_raw_parts(p as *mut u8, 0, n));
        }
    }
}

/// A panic logs its message at level error, then the call traps (panic = abort).
fn hook_panics() {
    unsafe {
        if HOOKED { return; }
        HOOKED = true;
    }
    std::panic::set_hook(std::boxed::Box::new(|info| {
        let msg = std::format!("{}", info);
        log(LogLevel::Error, &msg);
    }));
}

/// `stdb_describe`: the description JSON, `(ptr << 32) | len`.
pub fn describe_export(json: String) -> i64 {
    unsafe {
        DESCRIPTION = Some(json);
        let d = DESCRIPTION.as_ref().unwrap();
        (((d.as_ptr() as u64) << 32) | d.len() as u64) as i64
    }
}

/// `stdb_call`: run reducer `idx`; 0 or `(len << 32) | ptr` of the error message.
pub fn call(reducers: &[ReducerFn], idx: i32, ptr: i32, len: i32) -> i64 {
    hook_panics();
    let args: &[u8] = if len <= 0 { &[] } else {
        unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) }
    };
    let res = match reducers.get(idx as usize) {
        Some(f) if idx >= 0 => f(args),
        _ => Err(String::from("stdb: no such reducer")),
    };
    free_host_allocs();
    match res {
        Ok(()) => 0,
        Err(mut msg) => {
            if msg.is_empty() { msg = String::from("error"); }
            unsafe {
                LAST_ERROR = Some(msg);
                let m = LAST_ERROR.as_ref().unwrap();
                (((m.len() as u64) << 32) | m.as_ptr() as usize as u64) as i64
            }
        }
    }
}

/// Decode one reducer argument (helper for `reducer!`).
pub fn arg<C: Column>(r: &mut Reader) -> Result<C, String> {
    C::decode(r).ok_or_else(|| String::from("stdb: the arguments do not match the reducer's parameters"))
}

/// Check that the arguments were used up (helper for `reducer!`).
pub fn args_done(r: &Reader) -> Result<(), String> {
    if r.at_end() { Ok(()) } else { Err(String::from("stdb: the arguments do not match the reducer's parameters")) }
}

// ---------------------------------------------------------------- macros

/// Declare a table and its row struct (fields are public; Clone, Debug, PartialEq derived):
///
/// ```ignore
/// table!(#[public] account => Account { #[pk] #[auto_inc] id: u64, #[index] owner: Identity, balance: i64 });
/// table!(#[scheduled = "tick"] tick_schedule => TickSchedule {
///     #[pk] #[auto_inc] scheduled_id: u64, scheduled_at: Timestamp, repeat_us: u64 });
/// ```
/// Column flags: `#[pk]` (primary key; several make a composite key), `#[auto_inc]`,
/// `#[unique]` (a unique hash index "by_<column>"), `#[index]` (a btree index "by_<column>").
#[macro_export]
macro_rules! table {
    ($(#[$tattr:ident $(= $tval:literal)?])* $name:ident => $T:ident {
        $( $(#[$f:ident])* $field:ident : $ty:ty ),* $(,)?
    }) => {
        #[derive(Clone, Debug, PartialEq)]
        pub struct $T { $( pub $field: $ty ),* }

        impl $crate::Table for $T {
            const NAME: &'static str = ::core::stringify!($name);
            fn public() -> bool { false $(|| $crate::__table_attr!(public $tattr))* }
            fn scheduled() -> ::core::option::Option<&'static str> {
                let mut _s = ::core::option::Option::None;
                $( _s = $crate::__table_attr!(scheduled _s, $tattr $(, $tval)?); )*
                _s
            }
            fn columns() -> ::std::vec::Vec<$crate::ColumnDef> {
                ::std::vec![ $( $crate::ColumnDef {
                    name: ::core::stringify!($field),
                    type_name: <$ty as $crate::Column>::type_name(),
                    flags: 0 $(| $crate::flags::$f)*,
                } ),* ]
            }
            fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                $( $crate::encode_column(&self.$field, out); )*
            }
            fn encode_pk(&self, out: &mut ::std::vec::Vec<u8>) {
                $( if (0 $(| $crate::flags::$f)*) & $crate::flags::pk != 0 {
                    $crate::encode_column(&self.$field, out);
                } )*
            }
            fn decode(r: &mut $crate::Reader) -> ::core::option::Option<Self> {
                let row = $T { $( $field: <$ty as $crate::Column>::decode(r)? ),* };
                if r.at_end() { ::core::option::Option::Some(row) } else { ::core::option::Option::None }
            }
            fn id_cache() -> &'static ::core::sync::atomic::AtomicI32 {
                static ID: ::core::sync::atomic::AtomicI32 = ::core::sync::atomic::AtomicI32::new(-1);
                &ID
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __table_attr {
    (public public) => { true };
    (public scheduled) => { false };
    (scheduled $s:ident, public) => { $s };
    (scheduled $s:ident, scheduled, $v:literal) => { ::core::option::Option::Some($v) };
}

/// Declare a reducer: a function returning `Result<(), String>` (an `Err` rolls back).
///
/// ```ignore
/// reducer!(fn transfer(from: u64, to: u64, amount: i64) -> Result<(), String> { ... });
/// reducer!(#[init] fn init() -> Result<(), String> { ... });            // also #[client_connected],
///                                                                      // #[client_disconnected]
/// reducer!(#[scheduled] fn tick(row: TickSchedule) -> Result<(), String> { ... });
/// ```
/// It defines the function and a module of the same name that `module!` lists.
#[macro_export]
macro_rules! reducer {
    (#[scheduled] fn $name:ident ($row:ident : $T:ty) -> $ret:ty $body:block) => {
        fn $name($row: $T) -> $ret $body
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code)]
        mod $name {
            use super::*;
            pub fn __describe() -> $crate::ReducerDef {
                $crate::ReducerDef { name: ::core::stringify!($name), lifecycle: ::core::option::Option::None,
                                     params: <$T as $crate::Table>::columns() }
            }
            pub fn __call(args: &[u8]) -> ::core::result::Result<(), ::std::string::String> {
                let mut r = $crate::Reader::new(args);
                let row = <$T as $crate::Table>::decode(&mut r)
                    .ok_or_else(|| ::std::string::String::from("stdb: the arguments do not match the reducer's parameters"))?;
                super::$name(row)
            }
        }
    };
    (#[$kind:ident] fn $name:ident () -> $ret:ty $body:block) => {
        $crate::__reducer!(::core::option::Option::Some(::core::stringify!($kind)), $name, (), $ret, $body);
    };
    (fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty $body:block) => {
        $crate::__reducer!(::core::option::Option::None, $name, ($($arg : $ty),*), $ret, $body);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __reducer {
    ($lifecycle:expr, $name:ident, ($($arg:ident : $ty:ty),*), $ret:ty, $body:block) => {
        fn $name($($arg: $ty),*) -> $ret $body
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code)]
        mod $name {
            use super::*;
            pub fn __describe() -> $crate::ReducerDef {
                $crate::ReducerDef { name: ::core::stringify!($name), lifecycle: $lifecycle,
                    params: ::std::vec![ $( $crate::ColumnDef { name: ::core::stringify!($arg),
                        type_name: <$ty as $crate::Column>::type_name(), flags: 0 } ),* ] }
            }
            pub fn __call(args: &[u8]) -> ::core::result::Result<(), ::std::string::String> {
                let mut _r = $crate::Reader::new(args);
                $( let $arg: $ty = $crate::arg(&mut _r)?; )*
                $crate::args_done(&_r)?;
                super::$name($($arg),*)
            }
        }
    };
}

/// The module's exports: every table and every reducer (in this order: a reducer's number is
/// its position), and optionally row-level visibility filters.
///
/// ```ignore
/// module!(tables: [Account], reducers: [init, transfer]);
/// module!(tables: [Note], reducers: [add], visibility: ["SELECT * FROM note WHERE owner = :sender"]);
/// ```
#[macro_export]
macro_rules! module {
    (tables: [$($T:ty),* $(,)?], reducers: [$($r:ident),* $(,)?] $(, visibility: [$($v:literal),* $(,)?])? $(,)?) => {
        #[no_mangle]
        pub extern "C" fn stdb_abi_version() -> i32 { 1 }
        #[no_mangle]
        pub extern "C" fn stdb_alloc(n: i32) -> i32 { $crate::host_alloc(n) }
        #[no_mangle]
        pub extern "C" fn stdb_describe() -> i64 {
            $crate::describe_export($crate::describe(
                &[ $( $crate::describe::table_json::<$T>() ),* ],
                &[ $( $r::__describe() ),* ],
                $crate::__visibility!($($($v),*)?)))
        }
        #[no_mangle]
        pub extern "C" fn stdb_call(reducer: i32, ptr: i32, len: i32) -> i64 {
            $crate::call(&[ $( $r::__call as $crate::ReducerFn ),* ], reducer, ptr, len)
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __visibility {
    () => { ::core::option::Option::None };
    ($($v:literal),+) => { ::core::option::Option::Some(&[$($v),+][..]) };
}
