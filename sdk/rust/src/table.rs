//! Tables: the `Table` trait the `table!` macro implements, and the row operations on it.

use crate::codec::{Column, Key, Reader};
use crate::sys;
use core::ops::Bound;
use core::sync::atomic::{AtomicI32, Ordering};
use std::string::String;
use std::vec::Vec;

/// A failed host call: the ABI's error code and the host's message (docs/abi.md).
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub code: i32,
    pub message: String,
}

impl Error {
    /// The error of the import that just returned `code` (its message from `error_detail`).
    pub fn last(code: i32) -> Error {
        let mut buf = [0u8; 512];
        let n = unsafe { sys::error_detail(buf.as_mut_ptr(), buf.len() as u32) };
        let n = (n.max(0) as usize).min(buf.len());
        Error { code, message: String::from_utf8_lossy(&buf[..n]).into_owned() }
    }
    pub fn is_unique_violation(&self) -> bool { self.code == sys::ERR_UNIQUE_VIOLATION }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(f, "stdb error {}: {}", self.code, self.message)
    }
}

/// So that `?` works in a reducer returning `Result<(), String>`.
impl From<Error> for String {
    fn from(e: Error) -> String { std::format!("{}", e) }
}

fn check(r: i32) -> Result<i32, Error> {
    if r < 0 { Err(Error::last(r)) } else { Ok(r) }
}

/// Column flags (`#[pk]`, `#[auto_inc]`, `#[unique]`, `#[index]` in `table!`).
#[allow(non_upper_case_globals)]
pub mod flags {
    pub const pk: u8 = 1;
    pub const auto_inc: u8 = 2;
    pub const unique: u8 = 4;
    pub const index: u8 = 8;
}

/// A column in the description: name, type, flags.
pub struct ColumnDef {
    pub name: &'static str,
    pub type_name: String,
    pub flags: u8,
}

/// A table's row type (implemented by `table!`).
pub trait Table: Sized {
    const NAME: &'static str;
    fn public() -> bool;
    fn scheduled() -> Option<&'static str>;
    fn columns() -> Vec<ColumnDef>;
    fn encode(&self, out: &mut Vec<u8>);
    fn encode_pk(&self, out: &mut Vec<u8>);
    fn decode(r: &mut Reader) -> Option<Self>;
    fn id_cache() -> &'static AtomicI32;

    /// The table's id (looked up once).
    fn table_id() -> i32 {
        let cache = Self::id_cache();
        let id = cache.load(Ordering::Relaxed);
        if id >= 0 { return id; }
        let id = unsafe { sys::table_id(Self::NAME.as_ptr(), Self::NAME.len() as u32) };
        if id >= 0 { cache.store(id, Ordering::Relaxed); }
        id
    }

    /// The id of index `name` ("pk" is the primary key, `#[unique]`/`#[index]` columns are "by_<col>").
    fn index_id(name: &str) -> Result<i32, Error> {
        if name == "pk" { return Ok(0); }
        check(unsafe { sys::index_id(Self::table_id(), name.as_ptr(), name.len() as u32) })
    }

    /// Insert a row; returns it with its auto-increment columns filled in.
    fn insert(row: Self) -> Result<Self, Error> {
        let mut buf = Vec::new();
        row.encode(&mut buf);
        check(unsafe { sys::insert(Self::table_id(), buf.as_mut_ptr(), buf.len() as u32) })?;
        Self::decode(&mut Reader::new(&buf)).ok_or(Error { code: sys::ERR_BAD_ROW, message: String::from("bad row") })
    }

    /// Replace the row with the same primary key: true replaced, false there is none.
    fn update(row: &Self) -> Result<bool, Error> {
        let mut buf = Vec::new();
        row.encode(&mut buf);
        Ok(check(unsafe { sys::update(Self::table_id(), buf.as_ptr(), buf.len() as u32) })? == 1)
    }

    /// The row whose primary key is `key` (a value, or a tuple for a composite key).
    fn find<K: Key>(key: K) -> Option<Self> { Self::find_by("pk", key).ok().flatten() }

    /// The first row whose index `index` key equals `key`.
    fn find_by<K: Key>(index: &str, key: K) -> Result<Option<Self>, Error> {
        let idx = Self::index_id(index)?;
        let mut k = Vec::new();
        key.encode_key(&mut k);
        let mut buf: Vec<u8> = Vec::with_capacity(256);
        loop {
            let cap = buf.capacity() as u32;
            let n = unsafe { sys::find(Self::table_id(), idx, k.as_ptr(), k.len() as u32, buf.as_mut_ptr(), cap) };
            if n == sys::ERR_BUFFER_TOO_SMALL {
                let need = unsafe { core::ptr::read_unaligned(buf.as_ptr() as *const u32) };
                buf.reserve_exact(need as usize);
                continue;
            }
            let n = check(n)? as usize;
            if n == 0 { return Ok(None); }
            unsafe { buf.set_len(n) };
            return Ok(Self::decode(&mut Reader::new(&buf)));
        }
    }

    /// Delete the row whose primary key is `key`: true deleted, false there was none.
    fn delete<K: Key>(key: K) -> Result<bool, Error> { Ok(Self::delete_by("pk", key)? > 0) }

    /// Delete every row whose index `index` key equals `key`; returns how many.
    fn delete_by<K: Key>(index: &str, key: K) -> Result<u32, Error> {
        let idx = Self::index_id(index)?;
        let mut k = Vec::new();
        key.encode_key(&mut k);
        Ok(check(unsafe { sys::delete(Self::table_id(), idx, k.as_ptr(), k.len() as u32) })? as u32)
    }

    /// Every row.
    fn iter() -> Iter<Self> { Iter::new(check(unsafe { sys::scan(Self::table_id()) })) }

    /// The rows whose index `index` key equals `key`.
    fn filter<K: Key>(index: &str, key: K) -> Iter<Self> {
        let mut k = Vec::new();
        key.encode_key(&mut k);
        Iter::new(Self::index_id(index).and_then(|idx| {
            check(unsafe { sys::seek(Self::table_id(), idx, k.as_ptr(), k.len() as u32) })
        }))
    }

    /// The rows of btree index `index` between two bounds (a bound may give a prefix of the
    /// index's columns), in key order: `Account::range("by_balance", Included(10i64), Unbounded)`.
    fn range<L: Key, H: Key>(index: &str, lo: Bound<L>, hi: Bound<H>) -> Iter<Self> {
        let (mut l, mut h) = (Vec::new(), Vec::new());
        let mut flags = 0u32;
        match &lo {
            Bound::Included(k) => { k.encode_key(&mut l); flags |= 3 | (L::COLUMNS << 8); }
            Bound::Excluded(k) => { k.encode_key(&mut l); flags |= 1 | (L::COLUMNS << 8); }
            Bound::Unbounded => {}
        }
        match &hi {
            Bound::Included(k) => { k.encode_key(&mut h); flags |= 12 | (H::COLUMNS << 16); }
            Bound::Excluded(k) => { k.encode_key(&mut h); flags |= 4 | (H::COLUMNS << 16); }
            Bound::Unbounded => {}
        }
        Iter::new(Self::index_id(index).and_then(|idx| {
            check(unsafe {
                sys::range(Self::table_id(), idx, l.as_ptr(), l.len() as u32, h.as_ptr(), h.len() as u32, flags)
            })
        }))
    }
}

/// Rows from a scan, filter or range; a failed host call ends it (see `error`).
pub struct Iter<T> {
    handle: i32,
    buf: Vec<u8>,
    pos: usize,
    pub error: Option<Error>,
    _t: core::marker::PhantomData<T>,
}

impl<T: Table> Iter<T> {
    fn new(h: Result<i32, Error>) -> Self {
        let (handle, error) = match h { Ok(h) => (h, None), Err(e) => (0, Some(e)) };
        Iter { handle, buf: Vec::new(), pos: 0, error, _t: core::marker::PhantomData }
    }
}

impl<T: Table> Iterator for Iter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.pos >= self.buf.len() {
            if self.handle <= 0 { return None; }
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() < 4096 { self.buf.reserve_exact(4096); }
            let mut n;
            loop {
                n = unsafe { sys::iter_next(self.handle, self.buf.as_mut_ptr(), self.buf.capacity() as u32) };
                if n != sys::ERR_BUFFER_TOO_SMALL { break; }
                let need = unsafe { core::ptr::read_unaligned(self.buf.as_ptr() as *const u32) } as usize;
                let cap = self.buf.capacity();
                self.buf.reserve_exact(need.max(2 * cap));
            }
            if n <= 0 {
                if n < 0 { self.error = Some(Error::last(n)); }
                self.handle = 0;
                return None;
            }
            unsafe { self.buf.set_len(n as usize) };
        }
        let len = u32::from_le_bytes(self.buf[self.pos..self.pos + 4].try_into().ok()?) as usize;
        let start = self.pos + 4;
        self.pos = start + len;
        let row = T::decode(&mut Reader::new(&self.buf[start..start + len]));
        if row.is_none() {                      // the host's row does not match the struct: stop
            self.error = Some(Error { code: sys::ERR_BAD_ROW, message: String::from("a row does not decode") });
            if self.handle > 0 { unsafe { sys::iter_close(self.handle) }; }
            self.handle = 0;
            self.buf.clear();
        }
        row
    }
}

impl<T> Drop for Iter<T> {
    fn drop(&mut self) {
        if self.handle > 0 { unsafe { sys::iter_close(self.handle) }; }
    }
}

/// Encode `v` (helper for the macros).
pub fn encode_column<C: Column>(v: &C, out: &mut Vec<u8>) { v.encode(out) }
