# cython: language_level=3
"""A reducer call and its commit, on the native lane.

``CallPath.run`` is what ``Database`` does for every reducer call.  Its transaction runs on the
database's reusable native write set (stdb/_core/txn.pyx); then, without the GIL, ``stdb_alloc``
and ``stdb_call`` run in wasmtime (stdb/module/_wasm.pyx), every import the reducer makes runs
in C on the tables (stdb/module/_host.pyx), and when the reducer succeeds the delta and its
commit-log record (docs/log-format.md) are built for the offset the log gives next.  Back with
the GIL, what is left is small: the module's log lines (when it wrote any), the record appended
to the log, the transaction ended, and a ``CallResult`` whose delta is decoded only if someone
looks at it.  A failure goes back to ``Database`` to become its exception, after rollback.
"""

cimport cython
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from stdb._core.rowbytes cimport CBuf, Err, cbuf_free, raise_err
from stdb._core.txn cimport NativeTx, tx_delta, tx_record, tx_reset, tx_rollback
from stdb._core.codec cimport RowCodec
from stdb.module._host cimport NativeHost, HostC, host_begin, host_end
from stdb.module._wasm cimport Instance, RunOut, RUN_OK
from stdb._core.logq cimport LogQueue, LQ_OK
from stdb._core.clock cimport mono_ns as _now_ns, mono_s as _mono, real_us as _now_us

from stdb.errors import DataError, InternalError
from stdb.storage.datastore import Transaction, TxDelta
from stdb.module._wasm import CallTrap, MemoryFault


cdef bytes ZERO16 = bytes(16)
cdef bytes ZERO32 = bytes(32)
_new_delta = object.__new__


@cython.final
@cython.no_gc
cdef class CallResult:
    """A committed reducer call: its commit-log ``offset`` (None: it changed nothing), its
    ``delta`` (decoded from the commit record when first read), the fuel it used, its timestamp,
    how long it took and the diffs of the subscribed queries it changed (query id -> QueryDiff)."""

    cdef public str reducer
    cdef public object offset
    cdef object _delta
    cdef public object fuel_used
    cdef public object timestamp
    cdef public double duration_s
    cdef public dict updates
    cdef bytes _rec                   # the commit record the delta is read from
    cdef object _ds
    cdef Py_ssize_t _ntables
    cdef Py_ssize_t _changes_len

    def __init__(self, str reducer, offset, delta, fuel_used, timestamp, double duration_s,
                 dict updates=None):
        self.reducer = reducer
        self.offset = offset
        self._delta = delta
        self.fuel_used = fuel_used
        self.timestamp = timestamp
        self.duration_s = duration_s
        self.updates = {} if updates is None else updates

    @property
    def delta(self):
        cdef object d = self._delta
        if d is None and self._rec is not None:
            d = _new_delta(TxDelta)              # TxDelta._record, without its frame
            d._tables = None
            d._parts = None
            d.changes = None
            d._rec = (self._rec, len(self._rec) - self._changes_len, self._ntables, self._ds)
            self._delta = d
            self._rec = None
            self._ds = None
        return d

    @delta.setter
    def delta(self, value):
        self._delta = value
        self._rec = None
        self._ds = None

    def __repr__(self):
        return (f"CallResult(reducer={self.reducer!r}, offset={self.offset!r}, delta={self.delta!r}, "
                f"fuel_used={self.fuel_used!r}, timestamp={self.timestamp!r}, "
                f"duration_s={self.duration_s!r}, updates={self.updates!r})")

    def __eq__(self, other):
        if not isinstance(other, CallResult):
            return NotImplemented
        o = <CallResult>other
        return (self.reducer, self.offset, self.delta, self.fuel_used, self.timestamp, self.duration_s,
                self.updates) == (o.reducer, o.offset, o.delta, o.fuel_used, o.timestamp, o.duration_s,
                                  o.updates)


@cython.final
cdef class CallPath:
    """The native call path of one ``Database``: its reusable write set (``core``), the last
    call's commit record, and what every call needs, taken from the database when it opens or
    publishes (``attach``)."""

    cdef readonly NativeTx core
    cdef CBuf rec
    cdef readonly uint64_t fuel_used
    cdef object db
    cdef public Instance inst         # the module's instance (None: make one at the next call)
    cdef public NativeHost host       # its imports
    cdef public object limits         # the database's Limits
    cdef object store
    cdef object log
    cdef LogQueue queue               # the commit log's queue (appended to from C)
    cdef object ds
    cdef object tx                    # the reusable Transaction over core
    cdef dict subs                    # the database's subscriptions (Subscriptions._by_id)
    cdef list infos                   # per reducer: (name, name as UTF-8, codec)
    cdef dict by_name                 # name -> reducer number, for reducers a client may call
    cdef object default_clock
    cdef double tick_seconds
    cdef int64_t last_ts
    cdef int64_t snap_txs             # automatic snapshot thresholds (0: none)
    cdef int64_t snap_bytes
    cdef bint timing                  # benchmarks: where a call's time goes (timings())
    cdef int64_t ns_total, ns_run, ns_commit, ns_host, ns_calls, n_imports

    def __cinit__(self, db, default_clock, double tick_seconds):
        self.core = NativeTx()
        memset(&self.rec, 0, sizeof(CBuf))
        self.db = db
        self.default_clock = default_clock
        self.tick_seconds = tick_seconds
        self.infos = []
        self.by_name = {}

    def __dealloc__(self):
        cbuf_free(&self.rec)

    def attach(self, store, subs, schema, codecs):
        """What calls need of the database: its store (log, datastore), its subscriptions, and
        its module's reducers (``schema`` None: none published)."""
        self.store = store
        self.log = store.log
        self.queue = store.log.queue
        self.ds = store.datastore
        self.subs = subs._by_id
        self.tx = None
        c = store.config
        self.snap_txs = c.snapshot_every_txs or 0
        self.snap_bytes = c.snapshot_every_bytes or 0
        self.infos = []
        self.by_name = {}
        if schema is not None:
            for i, rd in enumerate(schema.reducers):
                self.infos.append((rd.name, rd.name.encode("utf-8"), codecs[i]))
                if rd.lifecycle is None:
                    self.by_name[rd.name] = i

    def timestamp(self, ts):
        """The call's time (µs): ``ts``, or the database clock; strictly increasing."""
        return self._timestamp(ts)

    cdef int64_t _timestamp(self, ts) except? -1:
        cdef int64_t t
        if ts is not None:
            t = ts
        elif self.db.clock is self.default_clock:
            t = _now_us()
        else:
            t = self.db.clock()
        if t <= self.last_ts:
            t = self.last_ts + 1
        self.last_ts = t
        return t

    def call(self, str reducer, args=(), *, sender=ZERO32, connection_id=None, timestamp=None):
        """``Database.call``: a reducer a client may call, by name."""
        idx = self.by_name.get(reducer)
        if idx is None:
            return self.db._refuse_call(reducer)        # raises the right error
        return self._run(idx, args, sender, connection_id, timestamp, None)

    def call_encoded(self, int idx, bytes raw, sender, connection_id):
        """A client's call whose arguments are already row-codec bytes, checked against the
        reducer's parameters (the server's CallReducer lane, stdb/server/_lane.pyx): reducer
        number ``idx`` of ``callable_reducers``."""
        if not 0 <= idx < len(self.infos):
            raise IndexError(f"no reducer number {idx}")
        return self._run(idx, None, sender, connection_id, None, None, raw)

    def callable_reducers(self):
        """name -> (reducer number, its parameters' codec) for the reducers a client may call."""
        return {name: (idx, self.infos[idx][2]) for name, idx in self.by_name.items()}

    def run(self, int idx, args, sender, connection_id, timestamp, before_commit):
        """Run reducer number ``idx`` and commit it; the CallResult, or the error (the
        transaction rolled back).  ``before_commit(tx)`` runs after the reducer, in its
        transaction (a schedule's bookkeeping)."""
        return self._run(idx, args, sender, connection_id, timestamp, before_commit)

    cdef _run(self, int idx, args, sender, connection_id, timestamp, before_commit, bytes raw=None):
        cdef RowCodec codec
        cdef bytes rname
        cdef bytes rec = None
        cdef Py_ssize_t ntables = 0, changes_len = 0
        cdef CallResult res
        cdef Instance inst
        cdef NativeHost host
        cdef HostC* h
        cdef RunOut out
        cdef Err e
        cdef int st, rst = 0, qst = LQ_OK
        cdef int64_t t_start = _now_ns() if self.timing else 0, t_run = 0, t_commit = 0, t_end = 0
        cdef int64_t host0 = 0, imports0 = 0
        cdef LogQueue q = self.queue
        cdef bint built = False
        cdef int64_t ts, offset
        cdef uint64_t fuel, ticks
        cdef double t0
        cdef const unsigned char* ap
        cdef const unsigned char* sp
        cdef const unsigned char* rp
        cdef Py_ssize_t an, rn
        db = self.db
        name, rname, codec = self.infos[idx]
        if type(sender) is not bytes or PyBytes_GET_SIZE(sender) != 32:
            db._bad_call(name, "sender", sender)
        conn = ZERO16 if connection_id is None else connection_id
        if type(conn) is not bytes or PyBytes_GET_SIZE(conn) != 16:
            db._bad_call(name, "connection_id", conn)
        if raw is None:
            if type(args) is not tuple:
                if not isinstance(args, (tuple, list)):
                    db._bad_call(name, "args", args)
                args = tuple(args)
            try:
                raw = codec.encode(args)               # checked, then encoded
            except DataError as err:
                db._bad_call(name, "values", err)
        ts = self._timestamp(timestamp)
        store = self.store
        if store._closed:
            store._check_open()
        log = self.log
        if q.failed:
            log._raise_if_failed()
        ds = self.ds
        if ds._tx is not None:
            ds.begin()                             # raises: a transaction is open
        tx = self.tx
        if tx is None:
            tx = self.tx = Transaction(ds, self.core)
        else:
            tx._open = True
        ds._tx = tx
        t0 = _mono()
        inst = self.inst if self.inst is not None else db._instance()
        host = self.host
        h = &host.h
        host.bind_to(ds, ds.generation)
        offset = <int64_t>q.next if before_commit is None else -1
        ap = <const unsigned char*>PyBytes_AS_STRING(raw)
        an = PyBytes_GET_SIZE(raw)
        rp = <const unsigned char*>PyBytes_AS_STRING(rname)
        rn = PyBytes_GET_SIZE(rname)
        sp = <const unsigned char*>PyBytes_AS_STRING(sender)
        if host_begin(h, &self.core.tx, sp, <const unsigned char*>PyBytes_AS_STRING(conn), ts, rp, rn) < 0:
            self._rollback(tx)
            raise MemoryError()
        host.reducer = name
        host.tx = tx
        limits = self.limits
        fuel = limits.fuel
        ticks = <uint64_t>max(1, <int64_t>(<double>limits.time / self.tick_seconds + 0.999)) + 1
        if self.timing:
            h.timing = True
            host0 = h.host_ns
            imports0 = h.host_calls
            t_run = _now_ns()
        with nogil:
            st = inst.run_call(idx, ap, an, fuel, ticks, &out)
            if self.timing:
                t_commit = _now_ns()
            if st == RUN_OK and out.packed == 0 and offset >= 0:
                rst = tx_delta(&self.core.tx, &e)
                if rst == 0 and self.core.tx.ndt:
                    self.rec.len = 0
                    rst = tx_record(&self.core.tx, <uint64_t>offset, ts, sp, rp, rn, ap, an, &self.rec, &e)
                    built = rst == 0
                    if built:                  # queued for the log writer, still without the GIL
                        qst = q.append_c(self.rec.data, self.rec.len, <uint64_t>offset)
            if self.timing:
                t_end = _now_ns()
        self.fuel_used = fuel - out.fuel_left if out.fuel_left <= fuel else 0
        host_end(h)
        host.tx = None
        if built and qst == LQ_OK:
            # committed: the record is queued for the log, so the transaction ends now,
            # whatever happens below
            ntables = self.core.tx.ndt
            changes_len = self.core.tx.delta.len
            self._finish(tx)
            if h.logs.len or h.logs_dropped:
                host.flush_logs()                  # a failing log sink is logged, never raised
            rec = PyBytes_FromStringAndSize(<char*>self.rec.data, self.rec.len)
            store._since_snapshot_txs += 1
            store._since_snapshot_bytes += self.rec.len
            if (self.snap_txs and store._since_snapshot_txs >= self.snap_txs) or \
                    (self.snap_bytes and store._since_snapshot_bytes >= self.snap_bytes):
                store._maybe_snapshot()
            res = CallResult(name, offset, None, self.fuel_used, ts, _mono() - t0, None)
            res._rec = rec
            res._ds = ds
            res._ntables = ntables
            res._changes_len = changes_len
            if self.subs:
                res.updates = db._updates(res.delta)
            if self.timing:                        # committed calls only
                self.ns_total += _now_ns() - t_start
                self.ns_run += t_commit - t_run
                self.ns_commit += t_end - t_commit
                self.ns_host += h.host_ns - host0
                self.n_imports += h.host_calls - imports0
                self.ns_calls += 1
            return res
        try:
            if h.logs.len or h.logs_dropped:
                host.flush_logs()
            packed = inst.outcome(st, &out, an)
            if rst < 0:
                raise_err(&e)
        except (CallTrap, MemoryFault) as err:
            self._rollback(tx)
            self.inst = None                       # a trapped instance may be mid-call: start afresh
            return db._call_trapped(name, err, inst, self.fuel_used)
        except BaseException:
            self._rollback(tx)
            raise
        if packed != 0:
            self._rollback(tx)
            return db._call_refused_by_reducer(name, inst, packed, self.fuel_used)
        if built:                                  # the log refused the record (failed, closed, no memory)
            self._rollback(tx)
            log._refused(qst)
        if before_commit is not None:
            try:
                before_commit(tx)
            except BaseException:
                self._rollback(tx)
                raise
            commit = store.commit(tx, reducer=name, args=raw, caller=sender, timestamp=ts)
            delta, off = commit.delta, commit.offset
        else:
            delta = TxDelta()                      # it changed nothing: nothing to log
            self._finish(tx)
            off = None
        res = CallResult(name, off, delta, self.fuel_used, ts, _mono() - t0, None)
        if self.subs:
            res.updates = db._updates(delta)
        return res

    def set_timing(self, bint on):
        """Benchmarks: time where each successful call goes (``timings``); off by default
        (the clock reads cost ~40 ns per import)."""
        self.timing = on
        self.ns_total = self.ns_run = self.ns_commit = self.ns_host = self.ns_calls = self.n_imports = 0
        if self.host is not None:
            self.host.h.timing = on
            self.host.h.host_ns = 0
            self.host.h.host_calls = 0

    def timings(self):
        """µs per committed call since ``set_timing(True)``: the whole call path (``total``),
        the module's own WASM and its calls in and out (``wasm``), its imports (``host``), the
        delta, the log record and its append (``commit``), and everything else (``rest``:
        checking and encoding the arguments, the transaction's bookkeeping, the result);
        ``host_calls`` is the imports per call."""
        cdef double n = self.ns_calls if self.ns_calls else 1
        return {"calls": self.ns_calls, "total_us": self.ns_total / n / 1e3,
                "wasm_us": (self.ns_run - self.ns_host) / n / 1e3, "host_us": self.ns_host / n / 1e3,
                "commit_us": self.ns_commit / n / 1e3, "host_calls": self.n_imports / n,
                "rest_us": (self.ns_total - self.ns_run - self.ns_commit) / n / 1e3}

    cdef _finish(self, tx):
        tx_reset(&self.core.tx)
        tx._open = False
        self.ds._tx = None

    cdef _rollback(self, tx):
        cdef Err e
        cdef int r = tx_rollback(&self.core.tx, &e)
        self._finish(tx)
        if r < 0:
            raise InternalError(f"rollback failed: {(<bytes>e.msg).decode('utf-8', 'replace')}")
