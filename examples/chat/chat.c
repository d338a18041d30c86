/* chat: users set a name and send messages; connections are tracked. */
#include "stdb.h"

typedef struct { stdb_identity id; stdb_str name; bool online; } user_t;
typedef struct { uint64_t id; stdb_identity sender; int64_t sent; stdb_str text; } message_t;
STDB_TABLE(user, user_t, "user", STDB_PUBLIC, STDB_COL(user_t, id, STDB_IDENTITY, STDB_PK),
    STDB_COL(user_t, name, STDB_STRING, 0), STDB_COL(user_t, online, STDB_BOOL, 0));
STDB_TABLE(message, message_t, "message", STDB_PUBLIC,
    STDB_COL(message_t, id, STDB_U64, STDB_PK | STDB_AUTO_INC), STDB_COL(message_t, sender, STDB_IDENTITY, STDB_INDEX),
    STDB_COL(message_t, sent, STDB_TIMESTAMP, 0), STDB_COL(message_t, text, STDB_STRING, 0));

static const char* set_online(bool online) {
    user_t u = { .id = stdb_sender() };
    if (stdb_find(&user, &u) != 1) { u.name = stdb_s(""); u.online = online; return stdb_insert(&user, &u) ? "insert failed" : 0; }
    u.online = online;
    return stdb_update(&user, &u) == 1 ? 0 : "update failed";
}
static const char* connected(void) { return set_online(true); }
static const char* disconnected(void) { return set_online(false); }

typedef struct { stdb_str name; } name_args;
static const char* set_name(const name_args* a) {
    user_t u = { .id = stdb_sender() };
    if (a->name.len == 0) return "names must not be empty";
    if (stdb_find(&user, &u) != 1) return "connect first";
    u.name = a->name;
    return stdb_update(&user, &u) == 1 ? 0 : "update failed";
}
typedef struct { stdb_str text; } text_args;
static const char* send_message(const text_args* a) {
    if (a->text.len == 0) return "messages must not be empty";
    message_t m = { 0, stdb_sender(), stdb_now(), a->text };
    return stdb_insert(&message, &m) ? "insert failed" : 0;
}
STDB_LIFECYCLE(on_connect, "client_connected", connected);
STDB_LIFECYCLE(on_disconnect, "client_disconnected", disconnected);
STDB_REDUCER(set_name_r, "set_name", set_name, name_args, STDB_ARG(name_args, name, STDB_STRING));
STDB_REDUCER(send_r, "send_message", send_message, text_args, STDB_ARG(text_args, text, STDB_STRING));
STDB_TABLES(&user, &message);
STDB_REDUCERS(&on_connect, &on_disconnect, &set_name_r, &send_r);
