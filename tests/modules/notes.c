/* Notes each identity writes and only it (and the database's owner) can read: a visibility
 * filter written with the C SDK (tests/test_examples.py); a private audit table only the owner
 * may query (tests/test_hostile_clients.py). */
#include "stdb.h"

typedef struct { uint64_t id; stdb_identity author; stdb_str text; } note_t;
STDB_TABLE(note, note_t, "note", STDB_PUBLIC,
    STDB_COL(note_t, id, STDB_U64, STDB_PK | STDB_AUTO_INC), STDB_COL(note_t, author, STDB_IDENTITY, STDB_INDEX),
    STDB_COL(note_t, text, STDB_STRING, 0));
typedef struct { uint64_t id; stdb_identity author; } audit_t;
STDB_TABLE(audit, audit_t, "audit", 0,
    STDB_COL(audit_t, id, STDB_U64, STDB_PK | STDB_AUTO_INC), STDB_COL(audit_t, author, STDB_IDENTITY, 0));
STDB_VISIBILITY("SELECT * FROM note WHERE author = :sender", "SELECT * FROM note WHERE text = 'hello, all'");

typedef struct { stdb_str text; } text_args;
static const char* add_note(const text_args* a) {
    note_t n = { 0, stdb_sender(), a->text };
    audit_t e = { 0, stdb_sender() };
    return stdb_insert(&note, &n) || stdb_insert(&audit, &e) ? "insert failed" : 0;
}
STDB_REDUCER(add_r, "add_note", add_note, text_args, STDB_ARG(text_args, text, STDB_STRING));
STDB_TABLES(&note, &audit);
STDB_REDUCERS(&add_r);
