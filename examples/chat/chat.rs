//! chat: users set a name and send messages; connections are tracked (the Rust twin of chat.c).
use stdb::*;

table!(#[public] user => User { #[pk] id: Identity, name: String, online: bool });
table!(#[public] message => Message {
    #[pk] #[auto_inc] id: u64, #[index] sender: Identity, sent: Timestamp, text: String });

fn set_online(online: bool) -> Result<(), String> {
    match User::find(sender()) {
        Some(u) => if User::update(&User { online, ..u })? { Ok(()) } else { Err("update failed".into()) },
        None => User::insert(User { id: sender(), name: String::new(), online }).map(|_| ()).map_err(|_| "insert failed".into()),
    }
}
reducer!(#[client_connected] fn client_connected() -> Result<(), String> { set_online(true) });
reducer!(#[client_disconnected] fn client_disconnected() -> Result<(), String> { set_online(false) });

reducer!(fn set_name(name: String) -> Result<(), String> {
    if name.is_empty() { return Err("names must not be empty".into()); }
    let u = User::find(sender()).ok_or("connect first")?;
    if User::update(&User { name, ..u })? { Ok(()) } else { Err("update failed".into()) }
});
reducer!(fn send_message(text: String) -> Result<(), String> {
    if text.is_empty() { return Err("messages must not be empty".into()); }
    let m = Message { id: 0, sender: sender(), sent: timestamp(), text };
    Message::insert(m).map(|_| ()).map_err(|_| "insert failed".into())
});

module!(tables: [User, Message], reducers: [client_connected, client_disconnected, set_name, send_message]);
