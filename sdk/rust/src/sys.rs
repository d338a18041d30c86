//! The host's imports (docs/abi.md, module "stdb") and their error codes.

#[link(wasm_import_module = "stdb")]
extern "C" {
    pub fn table_id(name: *const u8, len: u32) -> i32;
    pub fn index_id(table: i32, name: *const u8, len: u32) -> i32;
    pub fn insert(table: i32, row: *mut u8, len: u32) -> i32;
    pub fn update(table: i32, row: *const u8, len: u32) -> i32;
    pub fn delete(table: i32, index: i32, key: *const u8, len: u32) -> i32;
    pub fn seek(table: i32, index: i32, key: *const u8, len: u32) -> i32;
    pub fn find(table: i32, index: i32, key: *const u8, len: u32, buf: *mut u8, cap: u32) -> i32;
    pub fn range(table: i32, index: i32, lo: *const u8, lo_len: u32, hi: *const u8, hi_len: u32,
                 flags: u32) -> i32;
    pub fn scan(table: i32) -> i32;
    pub fn iter_next(iter: i32, buf: *mut u8, cap: u32) -> i32;
    pub fn iter_close(iter: i32) -> i32;
    pub fn log(level: i32, msg: *const u8, len: u32);
    pub fn sender(out32: *mut u8);
    pub fn connection_id(out16: *mut u8);
    pub fn timestamp() -> i64;
    pub fn random_seed() -> i64;
    pub fn error_detail(buf: *mut u8, cap: u32) -> i32;
}

pub const ERR_NO_SUCH_TABLE: i32 = -1;
pub const ERR_NO_SUCH_INDEX: i32 = -2;
pub const ERR_BAD_ROW: i32 = -3;
pub const ERR_UNIQUE_VIOLATION: i32 = -4;
pub const ERR_NO_SUCH_ITER: i32 = -5;
pub const ERR_BUFFER_TOO_SMALL: i32 = -6;
pub const ERR_ROW_TOO_LARGE: i32 = -7;
pub const ERR_WRONG_INDEX_KIND: i32 = -8;
pub const ERR_BAD_ARGUMENT: i32 = -9;
pub const ERR_NO_TRANSACTION: i32 = -10;
pub const ERR_TOO_MANY_ITERS: i32 = -11;
