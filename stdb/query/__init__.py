"""SQL: parsing, binding, one-off queries, DML and subscriptions (see docs/sql.md)."""
