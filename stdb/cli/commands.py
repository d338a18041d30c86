"""The CLI's client commands: each connects to a running server with the saved identity."""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import trio

from stdb.cli.output import errors_exit, print_table, show, to_json
from stdb.client.cache import Event
from stdb.client.connection import DbConnection, connect, default_credentials
from stdb.client.credentials import load_token, save_token
from stdb.errors import ConnectionLost, DataError, StdbError

__all__ = ["COMMANDS", "parse_args"]

T = TypeVar("T")

server_option = click.option("--server", "-s", default="ws://127.0.0.1:3000", envvar="STDB_SERVER",
                             show_default=True, help="The server's URL (env STDB_SERVER).")
credentials_option = click.option("--credentials", default=None, envvar="STDB_CREDENTIALS",
                                  help="The saved-tokens file (default ~/.config/stdb/credentials.json).")


def _with_conn(server: str, database: str, credentials: str | None,
               fn: Callable[[DbConnection], Awaitable[T]]) -> T:
    # a command's connection is short: no reconnecting (a dropped one fails the command)
    async def main() -> T:
        async with connect(server, database, credentials=credentials or default_credentials(),
                           reconnect=False) as conn:
            return await fn(conn)
    return trio.run(main)


def _raise_if_lost(conn: DbConnection) -> None:
    """After following changes or logs: the connection's end, if the server ended it."""
    if conn.state == "closed":
        raise ConnectionLost(f"the connection ended: {conn.close_reason}")


def parse_args(values: tuple[str, ...], params: list[dict] | None) -> list[Any]:
    """Reducer arguments from the command line: each is JSON (``42``, ``"text"``, ``[1,2]``,
    ``null``); what is not valid JSON is taken as text.  Identity and bytes parameters take hex
    text.  With the reducer's parameters known, the count is checked here."""
    out: list[Any] = []
    for i, v in enumerate(values):
        try:
            x = json.loads(v)
        except ValueError:
            x = v
        if params is not None and i < len(params) and params[i]["type"] in ("identity", "bytes") \
                and isinstance(x, str):
            try:
                x = bytes.fromhex(x.removeprefix("0x"))
            except ValueError:
                raise DataError(f"argument {i + 1} ({params[i]['name']}) must be hex digits") from None
        out.append(x)
    if params is not None and len(out) != len(params):
        sig = ", ".join(f"{p['name']}: {p['type']}" for p in params)
        raise DataError(f"the reducer takes {len(params)} argument(s) ({sig}); {len(out)} given")
    return out


def _reducer_params(conn: DbConnection, name: str) -> list[dict] | None:
    if conn.module is None:
        return None
    for r in conn.module["reducers"]:
        if r["name"] == name:
            return list(r["params"])
    return None


@click.command()
@click.argument("database")
@click.argument("module", type=click.Path(exists=True, dir_okay=False))
@server_option
@credentials_option
@errors_exit
def publish(database: str, module: str, server: str, credentials: str | None) -> None:
    """Publish MODULE (.wasm, or .c/.rs/Cargo.toml built first) as DATABASE; the first publisher owns it."""
    from stdb.module.build import build_module, is_source
    if is_source(module):
        with tempfile.TemporaryDirectory() as d:
            wasm = pathlib.Path(build_module(module, os.path.join(d, "module.wasm"))).read_bytes()
        click.echo(f"built {module}: {len(wasm):,} bytes", err=True)
    else:
        wasm = pathlib.Path(module).read_bytes()
    res = _with_conn(server, database, credentials, lambda c: c.publish(wasm))
    click.echo(f"published {database}: tables created {res['created_tables'] or 'none'}, altered "
               f"{res['altered_tables'] or 'none'}; reducers {', '.join(res['reducers'])}")


@click.command()
@click.argument("database")
@click.argument("reducer")
@click.argument("args", nargs=-1)
@server_option
@credentials_option
@errors_exit
def call(database: str, reducer: str, args: tuple[str, ...], server: str, credentials: str | None) -> None:
    """Call REDUCER with ARGS (each JSON; bare words are text; hex for identities)."""
    async def go(conn: DbConnection) -> Any:
        return await conn.call(reducer, *parse_args(args, _reducer_params(conn, reducer)))
    out = _with_conn(server, database, credentials, go)
    if out.ok:
        click.echo(f"{reducer}: committed at offset {out.offset}")
    else:
        click.echo(f"{reducer}: {out.status}: {out.message}", err=True)
        sys.exit(1)


@click.command()
@click.argument("database")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.option("--plan", is_flag=True, help="Also print the query plan.")
@server_option
@credentials_option
@errors_exit
def sql(database: str, query: str, as_json: bool, plan: bool, server: str, credentials: str | None) -> None:
    """Run a one-off QUERY (SELECT; INSERT/UPDATE/DELETE for the owner)."""
    res = _with_conn(server, database, credentials, lambda c: c.query(query))
    print_table(res.columns, res.rows, as_json, res.types)
    if plan and res.plan:
        click.echo("plan:\n  " + "\n  ".join(res.plan))


@click.command()
@click.argument("database")
@click.argument("queries", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change.")
@click.option("--count", "-n", type=int, default=None, help="Stop after this many transactions.")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds.")
@server_option
@credentials_option
@errors_exit
def subscribe(database: str, queries: tuple[str, ...], as_json: bool, count: int | None,
              timeout: float | None, server: str, credentials: str | None) -> None:
    """Subscribe to QUERIES: print their rows, then every change as it commits."""

    def emit(kind: str, table: str, row: tuple, ev: Event, old: tuple | None = None) -> None:
        if as_json:
            d: dict[str, Any] = {"op": kind, "table": table, "row": to_json(list(row)),
                                 "offset": ev.offset, "reducer": ev.reducer}
            if old is not None:
                d["old"] = to_json(list(old))
            click.echo(json.dumps(d, ensure_ascii=False))
        else:
            sign = {"insert": "+", "delete": "-", "update": "~"}[kind]
            click.echo(f"{sign} {table} ({', '.join(show(v) for v in row)})"
                       + (f"  [was ({', '.join(show(v) for v in old)})]" if old is not None else ""))

    async def go(conn: DbConnection) -> None:
        done = trio.Event()
        txs: set[Any] = set()
        conn.on_disconnect = lambda reason: done.set()

        def on_tx(ev: Event) -> None:
            if ev.offset is not None or ev.reducer is not None:
                txs.add((ev.offset, ev.timestamp))
                if count is not None and len(txs) >= count:
                    done.set()

        def watch(t: str) -> None:
            def inserted(row: tuple, ev: Event) -> None:
                emit("insert", t, row, ev)
                on_tx(ev)

            def deleted(row: tuple, ev: Event) -> None:
                emit("delete", t, row, ev)
                on_tx(ev)

            def updated(old: tuple, new: tuple, ev: Event) -> None:
                emit("update", t, new, ev, old)
                on_tx(ev)
            conn.on_insert(t, inserted)
            conn.on_delete(t, deleted)
            conn.on_update(t, updated)

        # callbacks on every table: only those the queries return rows of are ever called
        for t in (conn.module or {}).get("tables", []):
            watch(t["name"])
        await conn.subscribe(*queries)
        if not as_json:
            click.echo(f"-- subscribed; waiting for changes{'' if count else ' (Ctrl-C to stop)'}", err=True)
        sys.stdout.flush()
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            await done.wait()
        _raise_if_lost(conn)

    _with_conn(server, database, credentials, go)


@click.command()
@click.argument("database")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new records.")
@click.option("-n", "limit", type=int, default=100, show_default=True, help="How many recent records.")
@click.option("--json", "as_json", is_flag=True)
@server_option
@credentials_option
@errors_exit
def logs(database: str, follow: bool, limit: int, as_json: bool, server: str,
         credentials: str | None) -> None:
    """Print the module's log records (owner only)."""
    def emit(e: dict) -> None:
        if as_json:
            click.echo(json.dumps(e, ensure_ascii=False))
        else:
            click.echo(f"{e['ts']} {e['level']:<5} [{e['reducer'] or '-'}] {e['message']}")
        sys.stdout.flush()

    async def go(conn: DbConnection) -> None:
        if not follow:
            for e in await conn.logs(limit):
                emit(e)
            return
        async with conn.follow_logs(limit) as entries:
            async for e in entries:
                emit(e)
        _raise_if_lost(conn)

    _with_conn(server, database, credentials, go)


@click.command()
@click.argument("database")
@click.option("--json", "as_json", is_flag=True)
@server_option
@credentials_option
@errors_exit
def describe(database: str, as_json: bool, server: str, credentials: str | None) -> None:
    """Print the tables and reducers of DATABASE's module."""
    mod = _with_conn(server, database, credentials, lambda c: c.describe())
    if as_json:
        click.echo(json.dumps(to_json(mod), indent=2))
        return
    click.echo(f"database {database}, owner {show(mod['owner'])}")
    for t in mod["tables"]:
        cols = ", ".join(f"{c['name']} {c['type']}" + (" auto_inc" if c["auto_inc"] else "")
                         for c in t["columns"])
        extra = [f"primary key ({', '.join(t['primary_key'])})"] if t["primary_key"] else []
        extra += [f"{i['kind']}{' unique' if i['unique'] else ''} index {i['name']} "
                  f"({', '.join(i['columns'])})" for i in t["indexes"]]
        if t.get("scheduled"):
            extra.append(f"schedules reducer {t['scheduled']}")
        extra += [f"visible to others: {v}" for v in t.get("visibility", [])]
        click.echo(f"table {t['name']}{'' if t['public'] else ' (private)'}({cols})")
        for x in extra:
            click.echo(f"    {x}")
    for r in mod["reducers"]:
        params = ", ".join(f"{p['name']} {p['type']}" for p in r["params"])
        click.echo(f"reducer {r['name']}({params})" + (f"  [{r['lifecycle']}]" if r["lifecycle"] else ""))


def parse_settings(pairs: tuple[str, ...]) -> dict[str, int | float | None]:
    """KEY=VALUE arguments as a settings change (VALUE ``default``: back to the default)."""
    out: dict[str, int | float | None] = {}
    for p in pairs:
        key, eq, text = p.partition("=")
        if not eq or not key:
            raise DataError(f"{p!r} is not KEY=VALUE", hint="e.g. clients.rows_examined=500000")
        text = text.strip().replace("_", "")
        if text == "default":
            out[key] = None
            continue
        try:
            out[key] = int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            raise DataError(f"setting {key}: {text!r} is not a number (or 'default')") from None
    return out


@click.command()
@click.argument("database")
@click.argument("changes", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@server_option
@credentials_option
@errors_exit
def settings(database: str, changes: tuple[str, ...], as_json: bool, server: str,
             credentials: str | None) -> None:
    """Show DATABASE's settings, or change them (owner only): KEY=VALUE ..., VALUE 'default' to
    go back to the default.  Keys: clients.* (everyone but the owner) and owner.*, each with
    rows_examined, rows_returned, result_bytes, seconds (one query's limits), subscribed_rows,
    calls_per_s, calls_burst, queries_per_s, queries_burst (0 per second: no limit)."""
    change = parse_settings(changes)
    res = _with_conn(server, database, credentials, lambda c: c.settings(change))
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    width = max(map(len, res))
    for k, v in res.items():
        mark = "  (changed now)" if k in change else ""
        click.echo(f"{k:<{width}}  {v:,}{mark}" if isinstance(v, int) else f"{k:<{width}}  {v:g}{mark}")


@click.command()
@click.argument("database")
@click.option("--yes", is_flag=True, help="Do not ask.")
@server_option
@credentials_option
@errors_exit
def delete(database: str, yes: bool, server: str, credentials: str | None) -> None:
    """Delete DATABASE and all its data (owner only)."""
    if not yes:
        click.confirm(f"delete database '{database}' and all its data?", abort=True)
    _with_conn(server, database, credentials, lambda c: c.delete_database())
    click.echo(f"deleted {database}")


@click.command()
@click.argument("database")
@server_option
@credentials_option
@errors_exit
def snapshot(database: str, server: str, credentials: str | None) -> None:
    """Have the server write a snapshot of DATABASE now (owner only)."""
    res = _with_conn(server, database, credentials, lambda c: c.snapshot())
    if res["offset"] is None:
        click.echo(f"{database}: nothing committed yet, no snapshot")
    else:
        click.echo(f"snapshot of {database} at offset {res['offset']}: {res['rows']:,} rows, "
                   f"{res['bytes']:,} bytes")


@click.command()
@server_option
@credentials_option
@click.option("--new", "forget", is_flag=True,
              help="Forget the saved token (the next connect makes a new identity).")
@errors_exit
def identity(server: str, credentials: str | None, forget: bool) -> None:
    """Show the identity the CLI uses with SERVER."""
    import jwt

    path = credentials or default_credentials()
    if forget:
        save_token(path, server, None)
        click.echo(f"forgot the token for {server}")
        return
    token = load_token(path, server)
    if token is None:
        click.echo(f"no identity saved for {server} yet (the first command that connects makes one)")
        return
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise StdbError(f"the saved token is malformed: {e}", code="bad_credentials") from None
    click.echo(f"identity {claims.get('sub')}\nserver   {server}\ntoken in {path}")


@click.command()
@click.argument("database")
@click.option("--out", "-o", default=None, help="The file to write (default: stdout).")
@click.option("--lang", type=click.Choice(["python", "typescript"]), default="python", show_default=True,
              help="python: a dataclass per table, an async method per reducer; typescript: an interface "
                   "per table, a method per reducer (for sdk/typescript).")
@server_option
@credentials_option
@errors_exit
def generate(database: str, out: str | None, lang: str, server: str, credentials: str | None) -> None:
    """Write typed bindings of DATABASE's module (Python by default, or TypeScript)."""
    from stdb.client.codegen import python_bindings
    from stdb.client.codegen_ts import typescript_bindings

    mod = _with_conn(server, database, credentials, lambda c: c.describe())
    src = (typescript_bindings if lang == "typescript" else python_bindings)(mod, database)
    if out is None:
        click.echo(src, nl=False)
    else:
        pathlib.Path(out).write_text(src)
        click.echo(f"wrote {out}", err=True)


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", required=True, help="The .wasm file to write.")
@click.option("-O", "opt", default="2", show_default=True, help="Optimisation level.")
@errors_exit
def build(sources: tuple[str, ...], out: str, opt: str) -> None:
    """Compile C SOURCES (with the SDK's stdb.h), or one Rust .rs file or Cargo.toml, into a wasm module."""
    from stdb.module.build import build_module

    build_module(list(sources), out, opt=f"-O{opt}")
    click.echo(f"{out}: {os.path.getsize(out):,} bytes")


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def log(args: tuple[str, ...]) -> None:
    """The offline commit-log tool: inspect | verify | dump | replay | stats DBDIR (see --help)."""
    from stdb.logtool import main

    sys.exit(main(list(args)))


COMMANDS = [publish, call, sql, subscribe, logs, describe, delete, snapshot, settings, identity, generate,
            build, log]
