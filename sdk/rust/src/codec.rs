//! The row codec (docs/row-format.md): each column type is a Rust type that encodes itself.

use std::string::String;
use std::vec::Vec;

/// A 32-byte identity (the `identity` column type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Identity(pub [u8; 32]);

/// Microseconds since the Unix epoch (the `timestamp` column type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// A value that is a column of the row codec.
pub trait Column: Sized {
    /// Its type name in the module description ("u64", "option<string>", ...).
    fn type_name() -> String;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(r: &mut Reader) -> Option<Self>;
}

/// Reads values from a row's bytes; `None` when they run out or are malformed.
pub struct Reader<'a> {
    pub bytes: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self { Reader { bytes, pos: 0 } }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() - self.pos { return None; }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }
    pub fn at_end(&self) -> bool { self.pos == self.bytes.len() }
}

macro_rules! fixed {
    ($($t:ty => $name:literal),*) => {$(
        impl Column for $t {
            fn type_name() -> String { String::from($name) }
            fn encode(&self, out: &mut Vec<u8>) { out.extend_from_slice(&self.to_le_bytes()); }
            fn decode(r: &mut Reader) -> Option<Self> {
                let b = r.take(core::mem::size_of::<$t>())?;
                Some(<$t>::from_le_bytes(b.try_into().ok()?))
            }
        }
    )*};
}
fixed!(i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", u8 => "u8", u16 => "u16",
       u32 => "u32", u64 => "u64", f32 => "f32", f64 => "f64");

impl Column for bool {
    fn type_name() -> String { String::from("bool") }
    fn encode(&self, out: &mut Vec<u8>) { out.push(*self as u8); }
    fn decode(r: &mut Reader) -> Option<Self> {
        match r.take(1)?[0] { 0 => Some(false), 1 => Some(true), _ => None }
    }
}

fn take_len<'a>(r: &mut Reader<'a>) -> Option<&'a [u8]> {
    let n = u32::decode(r)? as usize;
    r.take(n)
}

impl Column for String {
    fn type_name() -> String { String::from("string") }
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u32).encode(out);
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(r: &mut Reader) -> Option<Self> {
        String::from_utf8(take_len(r)?.to_vec()).ok()
    }
}

/// `bytes` columns are `Vec<u8>` (so there is no `array<u8>`; other arrays are `Vec<T>` via [`Array`]).
impl Column for Vec<u8> {
    fn type_name() -> String { String::from("bytes") }
    fn encode(&self, out: &mut Vec<u8>) {
        (self.len() as u32).encode(out);
        out.extend_from_slice(self);
    }
    fn decode(r: &mut Reader) -> Option<Self> { Some(take_len(r)?.to_vec()) }
}

/// An `array<T>` column (T a base type; `Vec<u8>` is `bytes`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Array<T>(pub Vec<T>);

impl<T: Column> Column for Array<T> {
    fn type_name() -> String { std::format!("array<{}>", T::type_name()) }
    fn encode(&self, out: &mut Vec<u8>) {
        (self.0.len() as u32).encode(out);
        for v in &self.0 { v.encode(out); }
    }
    fn decode(r: &mut Reader) -> Option<Self> {
        let n = u32::decode(r)? as usize;
        if n > r.bytes.len() - r.pos { return None; }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n { v.push(T::decode(r)?); }
        Some(Array(v))
    }
}

impl<T: Column> Column for Option<T> {
    fn type_name() -> String { std::format!("option<{}>", T::type_name()) }
    fn encode(&self, out: &mut Vec<u8>) {
        match self { None => out.push(0), Some(v) => { out.push(1); v.encode(out) } }
    }
    fn decode(r: &mut Reader) -> Option<Self> {
        match r.take(1)?[0] { 0 => Some(None), 1 => Some(Some(T::decode(r)?)), _ => None }
    }
}

impl Column for Identity {
    fn type_name() -> String { String::from("identity") }
    fn encode(&self, out: &mut Vec<u8>) { out.extend_from_slice(&self.0); }
    fn decode(r: &mut Reader) -> Option<Self> { Some(Identity(r.take(32)?.try_into().ok()?)) }
}

impl Column for Timestamp {
    fn type_name() -> String { String::from("timestamp") }
    fn encode(&self, out: &mut Vec<u8>) { self.0.encode(out) }
    fn decode(r: &mut Reader) -> Option<Self> { Some(Timestamp(i64::decode(r)?)) }
}

/// An index key or a prefix of one: a column value, a reference to one, or a tuple of them.
pub trait Key {
    /// How many index columns it gives.
    const COLUMNS: u32;
    fn encode_key(&self, out: &mut Vec<u8>);
}

impl<T: Column> Key for T {
    const COLUMNS: u32 = 1;
    fn encode_key(&self, out: &mut Vec<u8>) { self.encode(out) }
}

macro_rules! tuple_key {
    ($n:literal: $($t:ident . $i:tt),*) => {
        impl<$($t: Column),*> Key for ($($t,)*) {
            const COLUMNS: u32 = $n;
            fn encode_key(&self, out: &mut Vec<u8>) { $(self.$i.encode(out);)* }
        }
    };
}
tuple_key!(1: A.0);
tuple_key!(2: A.0, B.1);
tuple_key!(3: A.0, B.1, C.2);
tuple_key!(4: A.0, B.1, C.2, D.3);
