//! The module description (docs/abi.md), written exactly as the C SDK writes it.

use crate::table::{flags, ColumnDef, Table};
use std::string::String;
use std::vec::Vec;

/// A reducer in the description.
pub struct ReducerDef {
    pub name: &'static str,
    pub lifecycle: Option<&'static str>,
    pub params: Vec<ColumnDef>,
}

fn jstr(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' | '\\' => { out.push('\\'); out.push(ch); }
            c if (c as u32) < 0x20 => out.push_str(&std::format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn columns(out: &mut String, cols: &[ColumnDef], with_flags: bool) {
    out.push('[');
    for (i, c) in cols.iter().enumerate() {
        if i > 0 { out.push(','); }
        out.push_str("{\"name\":");
        jstr(out, c.name);
        out.push_str(",\"type\":");
        jstr(out, &c.type_name);
        if with_flags && c.flags & flags::auto_inc != 0 { out.push_str(",\"auto_inc\":true"); }
        out.push('}');
    }
    out.push(']');
}

/// One table's JSON object.
pub fn table_json<T: Table>() -> String {
    let cols = T::columns();
    let mut out = String::from("{\"name\":");
    jstr(&mut out, T::NAME);
    out.push_str(if T::public() { ",\"public\":true" } else { ",\"public\":false" });
    if let Some(s) = T::scheduled() {
        out.push_str(",\"scheduled\":");
        jstr(&mut out, s);
    }
    out.push_str(",\"columns\":");
    columns(&mut out, &cols, true);
    out.push_str(",\"primary_key\":[");
    let pk: Vec<&ColumnDef> = cols.iter().filter(|c| c.flags & flags::pk != 0).collect();
    for (i, c) in pk.iter().enumerate() {
        if i > 0 { out.push(','); }
        jstr(&mut out, c.name);
    }
    out.push_str("],\"indexes\":[");
    let mut first = true;
    for c in cols.iter().filter(|c| c.flags & (flags::unique | flags::index) != 0) {
        if !first { out.push(','); }
        first = false;
        out.push_str("{\"name\":\"by_");
        out.push_str(c.name);
        out.push_str("\",\"columns\":[");
        jstr(&mut out, c.name);
        out.push_str(if c.flags & flags::unique != 0 { "],\"kind\":\"hash\",\"unique\":true}" }
                     else { "],\"kind\":\"btree\",\"unique\":false}" });
    }
    out.push_str("]}");
    out
}

/// The whole description.
pub fn describe(tables: &[String], reducers: &[ReducerDef], visibility: Option<&[&str]>) -> String {
    let mut out = String::from("{\"abi\":1,\"tables\":[");
    out.push_str(&tables.join(","));
    out.push_str("],\"reducers\":[");
    for (i, r) in reducers.iter().enumerate() {
        if i > 0 { out.push(','); }
        out.push_str("{\"name\":");
        jstr(&mut out, r.name);
        if let Some(l) = r.lifecycle {
            out.push_str(",\"lifecycle\":");
            jstr(&mut out, l);
        }
        out.push_str(",\"params\":");
        columns(&mut out, &r.params, false);
        out.push('}');
    }
    out.push(']');
    if let Some(v) = visibility {
        out.push_str(",\"visibility\":[");
        for (i, q) in v.iter().enumerate() {
            if i > 0 { out.push(','); }
            jstr(&mut out, q);
        }
        out.push(']');
    }
    out.push('}');
    out
}
