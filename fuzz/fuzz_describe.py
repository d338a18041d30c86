"""Fuzz target: the module description reader (stdb/module/describe.py, docs/abi.md).

Input: the bytes a module's ``stdb_describe`` returns (UTF-8 JSON).  ``parse_description``
either returns a ModuleSchema or raises ``ModuleError`` — nothing else.  An accepted schema is
usable: every table's row codec and every reducer's argument codec can be built, the
reducer and lifecycle look-ups agree with the reducer list, and schedule tables name
reducers that exist.

    python -m fuzz.fuzz_describe fuzz/corpus/describe -max_total_time=60
"""

from __future__ import annotations

from fuzz._harness import fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    from stdb._core.codec import RowCodec
    from stdb.errors import ModuleError
    from stdb.module.describe import LIFECYCLES, parse_description


def TestOneInput(data: bytes) -> None:
    try:
        schema = parse_description(data)
    except ModuleError:
        return
    for t in schema.tables:
        RowCodec(t.name, t.column_names, t.column_types)
        assert schema.table(t.name) is t
    for i, r in enumerate(schema.reducers):
        r.codec()
        assert schema.reducer_index(r.name) == i
    for kind in LIFECYCLES:
        i = schema.lifecycle(kind)
        assert i is None or schema.reducers[i].lifecycle == kind
    for table, reducer in schema.schedules.items():
        assert schema.table(table) is not None and schema.reducer_index(reducer) is not None
    for table in schema.visibility:
        assert schema.table(table) is not None


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
