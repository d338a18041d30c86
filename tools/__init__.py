"""Offline tools that work on a data directory through stdb.storage."""
