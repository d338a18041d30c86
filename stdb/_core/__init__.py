"""The Cython storage engine: column types and codecs, pages, indexes, tables.

Nothing here imports from stdb except ``stdb.errors``.  ``reference`` is the
pure-Python twin of ``table`` used as a test oracle.
"""
