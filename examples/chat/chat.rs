//! chat: users set a name and send messages; connections are tracked (the Rust twin of chat.c).
use stdb::*;

table!(#[public] user => User { #[pk] id: Identity, name: String, online: bool });
table!(#[public] message => Message {
    #[pk] #[auto_inc] id: u64, #[index] sender: Identity, sent: Timestamp, text: String });

fn set_online(online: bool) -> Result<(), String> {
    match User::find(sender()) {
        Some(u) => ensure(User::update(&User { online, ..u }) == Ok(true), "update failed"),
        None => ensure(User::insert(User { id: sender(), name: String::new(), online }).is_ok(),
                       "insert failed"),
    }
}
reducer!(#[client_connected] fn client_connected() -> Result<(), String> { set_online(true) });
reducer!(#[client_disconnected] fn client_disconnected() -> Result<(), String> { set_online(false) });

reducer!(fn set_name(name: String) -> Result<(), String> {
    if name.is_empty() { return Err("names must not be empty".into()); }
    let u = User::find(sender()).ok_or("connect first")?;
    ensure(User::update(&User { name, ..u })?, "update failed")
});
reducer!(fn send_message(text: String) -> Result<(), String> {
    if text.is_empty() { return Err("messages must not be empty".into()); }
    let m = Message { id: 0, sender: sender(), sent: timestamp(), text };
    ensure(Message::insert(m).is_ok(), "insert failed")
});

module!(tables: [User, Message], reducers: [client_connected, client_disconnected, set_name, send_message]);
