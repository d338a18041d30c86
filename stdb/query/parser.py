"""A small hand-written parser for stdb's SQL subset.

Hand-written rather than sqlglot: the subset is small, the errors can name the exact position
and what was expected there, and parsing a subscription costs microseconds.  The grammar is
in docs/sql.md.  ``parse`` returns one statement (``stdb.query.ast``) or raises QueryError.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from stdb.errors import QueryError
from stdb.query import ast as A

__all__ = ["parse", "parse_expr", "position_text"]

KEYWORDS = frozenset("""
select from where and or not in is null between join inner on as group by order asc desc limit
insert into values update set delete true false count sum min max avg
""".split())

_TOKEN = re.compile(r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<hex>[xX]'(?P<hexbody>[0-9a-fA-F]*)')
  | (?P<str>'(?:[^']|'')*')
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<qid>"(?:[^"]|"")+")
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<param>:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|==|[=<>(),.*;+-])
""", re.VERBOSE)

MAX_QUERY_CHARS = 64 * 1024
MAX_DEPTH = 64                 # nesting of parentheses and NOTs
_TOO_DEEP = f"the expression is nested too deeply (over {MAX_DEPTH} levels)"


class Tok(NamedTuple):
    kind: str      # kw, id, num, str, hex, param, op, eof
    value: object
    pos: int
    text: str


def position_text(sql: str, pos: int) -> str:
    """'line L, column C' of a character offset."""
    line = sql.count("\n", 0, pos) + 1
    col = pos - (sql.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {col}"


def _error(sql: str, pos: int, msg: str) -> QueryError:
    start = sql.rfind("\n", 0, pos) + 1
    end = sql.find("\n", pos)
    line = sql[start:end if end >= 0 else len(sql)]
    caret = " " * (pos - start) + "^"
    return QueryError(f"SQL error at {position_text(sql, pos)}: {msg}", hint=f"{line}\n{caret}")


def _tokens(sql: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    n = len(sql)
    while pos < n:
        m = _TOKEN.match(sql, pos)
        if m is None:
            if sql[pos] in "'\"":
                raise _error(sql, pos, "this quote is never closed")
            raise _error(sql, pos, f"unexpected character {sql[pos]!r}")
        kind = m.lastgroup
        text = m.group()
        if kind == "hexbody":
            kind = "hex"
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "hex":
            body = m.group("hexbody")
            if len(body) % 2:
                raise _error(sql, pos, "a hex literal needs an even number of digits")
            out.append(Tok("hex", bytes.fromhex(body), pos, text))
        elif kind == "str":
            out.append(Tok("str", text[1:-1].replace("''", "'"), pos, text))
        elif kind == "num":
            val: object = float(text) if any(c in text for c in ".eE") else int(text)
            out.append(Tok("num", val, pos, text))
        elif kind == "qid":
            out.append(Tok("id", text[1:-1].replace('""', '"'), pos, text))
        elif kind == "id":
            low = text.lower()
            out.append(Tok("kw", low, pos, text) if low in KEYWORDS else Tok("id", text, pos, text))
        elif kind == "param":
            out.append(Tok("param", text[1:], pos, text))
        else:
            out.append(Tok("op", "!=" if text == "<>" else "=" if text == "==" else text, pos, text))
        pos = m.end()
    out.append(Tok("eof", None, n, ""))
    return out


def _describe(t: Tok) -> str:
    if t.kind == "eof":
        return "the end of the query"
    if t.kind == "kw":
        return t.text.upper()
    return repr(t.text)


class _Parser:
    def __init__(self, sql: str) -> None:
        if not isinstance(sql, str):
            raise QueryError(f"a query must be a string, got {type(sql).__name__}")
        if len(sql) > MAX_QUERY_CHARS:
            raise QueryError(f"the query is {len(sql):,} characters long; at most {MAX_QUERY_CHARS:,}")
        self.sql = sql
        self.toks = _tokens(sql)
        self.i = 0
        self.depth = 0

    # ---- token helpers

    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def fail(self, expected: str, tok: Tok | None = None) -> QueryError:
        t = tok or self.tok
        return _error(self.sql, t.pos, f"expected {expected}, found {_describe(t)}")

    def next(self) -> Tok:
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def is_kw(self, *words: str) -> bool:
        return self.tok.kind == "kw" and self.tok.value in words

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.value in ops

    def accept_kw(self, word: str) -> bool:
        if self.is_kw(word):
            self.i += 1
            return True
        return False

    def accept_op(self, op: str) -> bool:
        if self.is_op(op):
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> Tok:
        if not self.is_kw(word):
            raise self.fail(word.upper())
        return self.next()

    def expect_op(self, op: str) -> Tok:
        if not self.is_op(op):
            raise self.fail(f"'{op}'")
        return self.next()

    def ident(self, what: str) -> Tok:
        if self.tok.kind != "id":
            kw = self.tok.kind == "kw"
            hint = " (a keyword; write it in double quotes to use it as a name)" if kw else ""
            raise self.fail(what + hint)
        return self.next()

    def end(self) -> None:
        self.accept_op(";")
        if self.tok.kind != "eof":
            raise self.fail("the end of the query")

    # ---- statements

    def statement(self) -> A.Statement:
        t = self.tok
        # EXPLAIN is a keyword only here, first in the query (a column may still be named so)
        if t.kind == "id" and t.text.lower() == "explain" and self.toks[self.i + 1].kind == "kw":
            self.i += 1
            inner = self.statement()
            if isinstance(inner, A.Explain):
                raise _error(self.sql, t.pos, "EXPLAIN EXPLAIN is not a statement")
            return A.Explain(inner, t.pos)
        if self.is_kw("select"):
            st: A.Statement = self.select()
        elif self.is_kw("insert"):
            st = self.insert()
        elif self.is_kw("update"):
            st = self.update()
        elif self.is_kw("delete"):
            st = self.delete()
        else:
            raise self.fail("SELECT, INSERT, UPDATE, DELETE or EXPLAIN")
        self.end()
        return st

    def table_ref(self) -> A.TableRef:
        t = self.ident("a table name")
        alias = None
        if self.accept_kw("as"):
            alias = str(self.ident("an alias").value)
        elif self.tok.kind == "id":
            alias = str(self.next().value)
        return A.TableRef(str(t.value), alias, t.pos)

    def select(self) -> A.Select:
        self.expect_kw("select")
        items = [self.select_item()]
        while self.accept_op(","):
            items.append(self.select_item())
        self.expect_kw("from")
        table = self.table_ref()
        joins = []
        while self.is_kw("join", "inner"):
            if self.accept_kw("inner") and not self.is_kw("join"):
                raise self.fail("JOIN")
            self.expect_kw("join")
            jt = self.table_ref()
            self.expect_kw("on")
            joins.append(A.Join(jt, self.expr()))
        where = self.expr() if self.accept_kw("where") else None
        group: list[A.Expr] = []
        if self.accept_kw("group"):
            self.expect_kw("by")
            group.append(self.expr())
            while self.accept_op(","):
                group.append(self.expr())
        order: list[A.OrderItem] = []
        if self.accept_kw("order"):
            self.expect_kw("by")
            order.append(self.order_item())
            while self.accept_op(","):
                order.append(self.order_item())
        limit = None
        if self.accept_kw("limit"):
            t = self.next()
            if t.kind != "num" or not isinstance(t.value, int):
                raise self.fail("a whole number after LIMIT", t)
            limit = t.value
        return A.Select(tuple(items), table, tuple(joins), where, tuple(group), tuple(order), limit)

    def select_item(self) -> A.SelectItem:
        t = self.tok
        if self.accept_op("*"):
            return A.SelectItem(A.Star(None, t.pos))
        if t.kind == "id" and self.toks[self.i + 1].value == "." and self.toks[self.i + 2].value == "*" \
                and self.toks[self.i + 1].kind == "op" and self.toks[self.i + 2].kind == "op":
            self.i += 3
            return A.SelectItem(A.Star(str(t.value), t.pos))
        e = self.expr()
        alias = None
        if self.accept_kw("as"):
            alias = str(self.ident("a column alias").value)
        elif self.tok.kind == "id":
            alias = str(self.next().value)
        return A.SelectItem(e, alias)

    def order_item(self) -> A.OrderItem:
        e = self.expr()
        if self.accept_kw("desc"):
            return A.OrderItem(e, True)
        self.accept_kw("asc")
        return A.OrderItem(e, False)

    def insert(self) -> A.Insert:
        self.expect_kw("insert")
        self.expect_kw("into")
        t = self.ident("a table name")
        table = A.TableRef(str(t.value), None, t.pos)
        cols = None
        if self.accept_op("("):
            names = [str(self.ident("a column name").value)]
            while self.accept_op(","):
                names.append(str(self.ident("a column name").value))
            self.expect_op(")")
            cols = tuple(names)
        self.expect_kw("values")
        rows = [self.value_row()]
        while self.accept_op(","):
            rows.append(self.value_row())
        return A.Insert(table, cols, tuple(rows))

    def value_row(self) -> tuple[A.Expr, ...]:
        self.expect_op("(")
        vals = [self.expr()]
        while self.accept_op(","):
            vals.append(self.expr())
        self.expect_op(")")
        return tuple(vals)

    def update(self) -> A.Update:
        self.expect_kw("update")
        table = self.table_ref()
        self.expect_kw("set")
        sets = [self.assignment()]
        while self.accept_op(","):
            sets.append(self.assignment())
        where = self.expr() if self.accept_kw("where") else None
        return A.Update(table, tuple(sets), where)

    def assignment(self) -> tuple[str, A.Expr]:
        c = self.ident("a column name")
        self.expect_op("=")
        return str(c.value), self.expr()

    def delete(self) -> A.Delete:
        self.expect_kw("delete")
        self.expect_kw("from")
        table = self.table_ref()
        where = self.expr() if self.accept_kw("where") else None
        return A.Delete(table, where)

    # ---- expressions

    def expr(self) -> A.Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(self.sql, self.tok.pos, _TOO_DEEP)
        try:
            return self.or_expr()
        finally:
            self.depth -= 1

    def or_expr(self) -> A.Expr:
        pos = self.tok.pos
        items = [self.and_expr()]
        while self.accept_kw("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else A.Or(tuple(items), pos)

    def and_expr(self) -> A.Expr:
        pos = self.tok.pos
        items = [self.not_expr()]
        while self.accept_kw("and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else A.And(tuple(items), pos)

    def not_expr(self) -> A.Expr:
        t = self.tok
        if self.accept_kw("not"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _error(self.sql, t.pos, _TOO_DEEP)
            try:
                return A.Not(self.not_expr(), t.pos)
            finally:
                self.depth -= 1
        return self.predicate()

    def predicate(self) -> A.Expr:
        pos = self.tok.pos
        left = self.operand()
        if self.tok.kind == "op" and self.tok.value in A.COMPARE_OPS:
            op = str(self.next().value)
            return A.Compare(op, left, self.operand(), pos)
        negated = False
        if self.is_kw("not"):
            nxt = self.toks[self.i + 1]
            if nxt.kind == "kw" and nxt.value in ("in", "between"):
                self.i += 1
                negated = True
            else:
                raise self.fail("IN or BETWEEN after NOT", nxt)
        if self.accept_kw("in"):
            self.expect_op("(")
            vals = [self.operand()]
            while self.accept_op(","):
                vals.append(self.operand())
            self.expect_op(")")
            return A.InList(left, tuple(vals), negated, pos)
        if self.accept_kw("between"):
            lo = self.operand()
            self.expect_kw("and")
            return A.Between(left, lo, self.operand(), negated, pos)
        if self.accept_kw("is"):
            neg = self.accept_kw("not")
            self.expect_kw("null")
            return A.IsNull(left, neg, pos)
        return left

    def operand(self) -> A.Expr:
        t = self.tok
        if t.kind == "num":
            self.i += 1
            return A.Literal(t.value, t.pos)
        if t.kind == "op" and t.value in ("-", "+") and self.toks[self.i + 1].kind == "num":
            self.i += 2
            v = self.toks[self.i - 1].value
            return A.Literal(-v if t.value == "-" else v, t.pos)      # type: ignore[operator]
        if t.kind in ("str", "hex"):
            self.i += 1
            return A.Literal(t.value, t.pos)
        if t.kind == "param":
            self.i += 1
            return A.Param(str(t.value), t.pos)
        if t.kind == "kw":
            if t.value in ("true", "false"):
                self.i += 1
                return A.Literal(t.value == "true", t.pos)
            if t.value == "null":
                self.i += 1
                return A.Literal(None, t.pos)
            if t.value in A.AGG_FUNCS and self.toks[self.i + 1].value == "(":
                self.i += 2
                if self.accept_op("*"):
                    if t.value != "count":
                        raise _error(self.sql, t.pos, f"{t.text.upper()}(*) is not allowed; only COUNT(*)")
                    arg = None
                else:
                    arg = self.operand()
                self.expect_op(")")
                return A.Agg(str(t.value), arg, t.pos)
        if t.kind == "id":
            self.i += 1
            if self.accept_op("."):
                c = self.ident("a column name")
                return A.ColumnRef(str(t.value), str(c.value), t.pos)
            return A.ColumnRef(None, str(t.value), t.pos)
        if self.accept_op("("):
            e = self.expr()
            self.expect_op(")")
            return e
        raise self.fail("a column, a value or '('")


def parse(sql: str) -> A.Statement:
    """Parse one statement; QueryError names the position and the problem."""
    return _Parser(sql).statement()


def parse_expr(sql: str) -> A.Expr:
    """Parse a bare expression (a visibility filter's condition, tests)."""
    p = _Parser(sql)
    e = p.expr()
    if p.tok.kind != "eof":
        raise p.fail("the end of the expression")
    return e
