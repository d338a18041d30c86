# cython: language_level=3
"""The hot path between stdb and wasmtime.

wasmtime-py's high-level calls cost ~7.5 µs per call and ~10 µs per host call (each
argument is boxed through ctypes).  Here the same C API is called through raw function
pointers taken from wasmtime-py's own shared library: ``wasmtime_func_call_unchecked`` with
a C array of raw values, and host imports defined with
``wasmtime_linker_define_func_unchecked`` whose callback is a C function of this module.
wasmtime-py is still used for everything off the hot path (engine, compile, linker,
instantiate, trap details).

A call runs without the GIL: the imports are C (stdb/module/_host.pyx, over the native table
and transaction API), so a reducer that loops until its limit holds its own thread and nobody
else's, and the epoch ticker — a C thread — interrupts it at its time limit.  Until 2026-12-01
the imports were Python and the call kept the GIL (releasing it then made every call a hand-off
to the commit-log writer).
"""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.ref cimport Py_INCREF
from libc.string cimport strlen

from stdb._core.clock cimport mono_ns as _now_ns
from stdb.module._host cimport (
    NativeHost, host_dispatch, OP_TABLE_ID, OP_INDEX_ID, OP_INSERT, OP_UPDATE, OP_DELETE,
    OP_SEEK, OP_RANGE, OP_SCAN, OP_ITER_NEXT, OP_ITER_CLOSE, OP_LOG, OP_SENDER, OP_CONNECTION_ID,
    OP_TIMESTAMP, OP_RANDOM_SEED, OP_ERROR_DETAIL, OP_FIND, FAULT_NONE,
)

import ctypes

import wasmtime
from wasmtime import _ffi as _wffi

from stdb.errors import InternalError, ModuleError


# ---------------------------------------------------------------- C API entry points

ctypedef void* (*fn_call_unchecked)(void* ctx, const func_t* f, val_raw* args, size_t n,
                                    void** trap) noexcept nogil
ctypedef void* (*fn_set_fuel)(void* ctx, uint64_t fuel) noexcept nogil
ctypedef void* (*fn_get_fuel)(const void* ctx, uint64_t* fuel) noexcept nogil
ctypedef void (*fn_set_epoch_deadline)(void* ctx, uint64_t ticks) noexcept nogil
ctypedef uint8_t* (*fn_memory_data)(const void* ctx, const memory_t* m) noexcept nogil
ctypedef size_t (*fn_memory_data_size)(const void* ctx, const memory_t* m) noexcept nogil
ctypedef void* (*fn_trap_new)(const char* msg, size_t n) noexcept nogil
ctypedef void (*fn_increment_epoch)(void* engine) noexcept nogil
ctypedef void (*fn_error_delete)(void* err) noexcept nogil

cdef fn_call_unchecked c_call
cdef fn_set_fuel c_set_fuel
cdef fn_get_fuel c_get_fuel
cdef fn_set_epoch_deadline c_set_epoch_deadline
cdef fn_memory_data c_memory_data
cdef fn_memory_data_size c_memory_data_size
cdef fn_trap_new c_trap_new
cdef fn_increment_epoch c_increment_epoch
cdef fn_error_delete c_error_delete


cdef size_t _addr(name):
    return <size_t>ctypes.cast(getattr(_wffi.dll, name), ctypes.c_void_p).value


c_call = <fn_call_unchecked><void*>_addr("wasmtime_func_call_unchecked")
c_set_fuel = <fn_set_fuel><void*>_addr("wasmtime_context_set_fuel")
c_get_fuel = <fn_get_fuel><void*>_addr("wasmtime_context_get_fuel")
c_set_epoch_deadline = <fn_set_epoch_deadline><void*>_addr("wasmtime_context_set_epoch_deadline")
c_memory_data = <fn_memory_data><void*>_addr("wasmtime_memory_data")
c_memory_data_size = <fn_memory_data_size><void*>_addr("wasmtime_memory_data_size")
c_trap_new = <fn_trap_new><void*>_addr("wasmtime_trap_new")
c_increment_epoch = <fn_increment_epoch><void*>_addr("wasmtime_engine_increment_epoch")
c_error_delete = <fn_error_delete><void*>_addr("wasmtime_error_delete")


cdef size_t _ptr_value(p):
    return <size_t>ctypes.cast(p, ctypes.c_void_p).value


# ---------------------------------------------------------------- the epoch ticker

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(pthread_t* t, const void* attr, void* (*start)(void*) noexcept nogil, void* arg)
    int pthread_detach(pthread_t t)

cdef extern from "<unistd.h>" nogil:
    int usleep(unsigned int usec)

cdef void* _ticker_engine = NULL
cdef unsigned int _tick_us = 0


cdef void* _tick_loop(void* arg) noexcept nogil:
    while True:
        usleep(_tick_us)
        c_increment_epoch(_ticker_engine)
    return NULL


def start_epoch_ticker(engine, double tick_seconds):
    """Increment ``engine``'s epoch every ``tick_seconds`` from a C thread, for the life of
    the process (the engine must live as long: stdb keeps one per process)."""
    global _ticker_engine, _tick_us
    cdef pthread_t t
    if _ticker_engine != NULL:
        raise InternalError("the epoch ticker is already running")
    # the ticker runs until the process ends, so the engine must never be freed, not even
    # while the interpreter shuts down: keep one reference that is never released
    Py_INCREF(engine)
    _ticker_engine = <void*>_ptr_value(engine.ptr())
    _tick_us = <unsigned int>max(100, int(tick_seconds * 1e6))
    if pthread_create(&t, NULL, _tick_loop, NULL) != 0:
        _ticker_engine = NULL
        raise InternalError("could not start the epoch ticker thread")
    pthread_detach(t)


# ---------------------------------------------------------------- imports

# name -> (op, params, results); the signatures of docs/abi.md (the ops: _host.pxd)
IMPORTS = {
    "table_id": (OP_TABLE_ID, "ii", "i"),
    "index_id": (OP_INDEX_ID, "iii", "i"),
    "insert": (OP_INSERT, "iii", "i"),
    "update": (OP_UPDATE, "iii", "i"),
    "delete": (OP_DELETE, "iiii", "i"),
    "seek": (OP_SEEK, "iiii", "i"),
    "find": (OP_FIND, "iiiiii", "i"),
    "range": (OP_RANGE, "iiiiiii", "i"),
    "scan": (OP_SCAN, "i", "i"),
    "iter_next": (OP_ITER_NEXT, "iii", "i"),
    "iter_close": (OP_ITER_CLOSE, "i", "i"),
    "log": (OP_LOG, "iii", ""),
    "sender": (OP_SENDER, "i", ""),
    "connection_id": (OP_CONNECTION_ID, "i", ""),
    "timestamp": (OP_TIMESTAMP, "", "I"),
    "random_seed": (OP_RANDOM_SEED, "", "I"),
    "error_detail": (OP_ERROR_DETAIL, "ii", "i"),
}


class CallTrap(Exception):
    """A call into the module trapped.  ``kind``: "trap", "out_of_fuel" or "timeout"."""

    def __init__(self, kind: str, message: str, backtrace: list):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.backtrace = backtrace


_TRAP_KINDS = {"OUT_OF_FUEL": "out_of_fuel", "INTERRUPT": "timeout"}
_TRAP_TEXT = {"out_of_fuel": "the call ran out of fuel", "timeout": "the call ran past its time limit"}


def _first_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.strip() == "Caused by:" and i + 1 < len(lines):
            return lines[i + 1].strip()
    return lines[0].strip() if lines else "trap"


def _backtrace_of(text: str) -> list:
    return [ln.strip() for ln in text.splitlines() if ln.strip()[:1].isdigit() and ":" in ln]


class MemoryFault(Exception):
    """A module passed a pointer/length outside its linear memory: the call traps."""


cdef void* _callback(void* env, void* caller, val_raw* a, size_t n) noexcept nogil:
    """Every "stdb" import: its arguments to the native host (stdb/module/_host.pyx) over the
    instance's linear memory as it is now (memory moves when it grows), without the GIL."""
    cdef Env* e = <Env*>env
    cdef int32_t args[7]
    cdef size_t i
    cdef int64_t r
    cdef uint8_t* base = c_memory_data(e.inst.ctx, &e.inst.memory)
    cdef uint64_t size = c_memory_data_size(e.inst.ctx, &e.inst.memory)
    cdef int64_t t0 = 0
    for i in range(7):
        args[i] = a[i].i32 if i < n else 0
    if e.host.timing:
        t0 = _now_ns()
        r = host_dispatch(e.host, e.op, base, size, args)
        e.host.host_ns += _now_ns() - t0
        e.host.host_calls += 1
    else:
        r = host_dispatch(e.host, e.op, base, size, args)
    if e.host.fault != FAULT_NONE:
        return c_trap_new(e.host.fault_msg, strlen(e.host.fault_msg))
    if e.result == 1:
        a[0].i64 = 0
        a[0].i32 = <int32_t>r
    elif e.result == 2:
        a[0].i64 = r
    return NULL


_OP_NAMES = {v[0]: k for k, v in IMPORTS.items()}


# ---------------------------------------------------------------- instances

@cython.final
cdef class Instance:
    """One instantiated module in its own store.  Not constructible directly: use
    ``instantiate``.  After a trap the instance must not be reused (globals such as the C
    stack pointer may be left mid-call): make a new one."""

    def __cinit__(self):
        self.envs = NULL
        self.nenvs = 0

    def __dealloc__(self):
        if self.envs != NULL:
            free(self.envs)

    cdef uint8_t* span(self, int64_t ptr, int64_t length) except NULL:
        cdef uint8_t* base = c_memory_data(self.c.ctx, &self.c.memory)
        cdef size_t size = c_memory_data_size(self.c.ctx, &self.c.memory)
        if length < 0 or ptr < 0 or <uint64_t>(ptr + length) > size:
            raise MemoryFault(f"pointer {ptr} + length {length} is outside linear memory "
                              f"({size} bytes)")
        return base + ptr if base != NULL else <uint8_t*>1

    cdef bytes read(self, int64_t ptr, int64_t length):
        cdef uint8_t* p = self.span(ptr, length)
        return PyBytes_FromStringAndSize(<char*>p, length)

    cdef int write(self, int64_t ptr, bytes data) except -1:
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef uint8_t* p = self.span(ptr, n)
        if n:
            memcpy(p, PyBytes_AS_STRING(data), n)
        return 0

    # ---- helpers for the host (also used by tests)

    def read_memory(self, uint32_t ptr, uint32_t length) -> bytes:
        return self.read(ptr, length)

    def write_memory(self, uint32_t ptr, bytes data) -> None:
        self.write(ptr, data)

    @property
    def memory_size(self) -> int:
        return c_memory_data_size(self.c.ctx, &self.c.memory)

    # ---- calls

    cdef _invoke(self, func_t* f, val_raw* vals, size_t n, uint64_t fuel, uint64_t ticks):
        """Run one export without the GIL; raise CallTrap when it traps."""
        cdef void* err
        cdef void* trap = NULL
        cdef void* ctx = self.c.ctx
        err = c_set_fuel(ctx, fuel)
        if err != NULL:
            c_error_delete(err)
            raise InternalError("fuel metering is not enabled on this engine")
        c_set_epoch_deadline(ctx, ticks)
        with nogil:
            err = c_call(ctx, f, vals, n, &trap)
        if err != NULL or trap != NULL:
            self.raise_trap(err, trap)

    cdef raise_trap(self, void* err, void* trap):
        """Raise the CallTrap of a call that trapped (wasmtime's error or trap, which this
        frees), naming the import's reason when an import trapped it: a bad pointer, or a
        failure of the host (kept in ``host_error``)."""
        self.host_error = None
        self.trap_note = None
        fault = self.host.take_fault()
        if fault is not None:
            kind, msg = fault
            if kind == "host":
                self.host_error = InternalError(msg)
                self.trap_note = f"stdb host error in an import: {msg}"
            else:
                self.trap_note = msg
        if err != NULL:
            e = wasmtime.WasmtimeError._from_ptr(
                ctypes.cast(<size_t>err, ctypes.POINTER(_wffi.wasmtime_error_t)))
            raise CallTrap("trap", self.trap_note or _first_line(str(e)), _backtrace_of(str(e)))
        t = wasmtime.Trap._from_ptr(ctypes.cast(<size_t>trap, ctypes.POINTER(_wffi.wasm_trap_t)))
        code = t.trap_code
        kind = _TRAP_KINDS.get(code.name if code is not None else "", "trap")
        frames = [f"{fr.module_name or 'module'}!{fr.func_name or f'func[{fr.func_index}]'}"
                  f" @0x{fr.module_offset:x}" for fr in t.frames]
        msg = _TRAP_TEXT.get(kind) or (code.name.lower().replace("_", " ") if code is not None
                                       else _first_line(t.message))
        raise CallTrap(kind, self.trap_note or msg, frames)

    cdef int run_call(self, int reducer, const unsigned char* args, Py_ssize_t n, uint64_t fuel,
                      uint64_t ticks, RunOut* out) noexcept nogil:
        """``stdb_alloc`` the arguments, copy them in, ``stdb_call`` the reducer — all without
        the GIL, under one fuel budget and one deadline.  A RUN_* status; the details in ``out``."""
        cdef val_raw v[3]
        cdef void* err
        cdef uint8_t* base
        cdef uint32_t ptr = 0
        out.err = NULL
        out.trap = NULL
        out.packed = 0
        out.fuel_left = 0
        self.fuel_limit = fuel
        err = c_set_fuel(self.c.ctx, fuel)
        if err != NULL:
            c_error_delete(err)
            return RUN_NO_FUEL
        c_set_epoch_deadline(self.c.ctx, ticks)
        if n:
            v[0].i64 = 0
            v[0].i32 = <int32_t>n
            out.err = c_call(self.c.ctx, &self.f_alloc, v, 1, &out.trap)
            if out.err != NULL or out.trap != NULL:
                c_get_fuel(self.c.ctx, &out.fuel_left)
                return RUN_TRAP
            ptr = <uint32_t>v[0].i32
            out.alloc_ptr = ptr
            if ptr == 0:
                c_get_fuel(self.c.ctx, &out.fuel_left)
                return RUN_ALLOC_ZERO
            base = c_memory_data(self.c.ctx, &self.c.memory)
            out.size = c_memory_data_size(self.c.ctx, &self.c.memory)
            if <uint64_t>ptr + <uint64_t>n > out.size:
                c_get_fuel(self.c.ctx, &out.fuel_left)
                return RUN_ALLOC_FAULT
            memcpy(base + ptr, args, n)
        v[0].i64 = 0
        v[1].i64 = 0
        v[2].i64 = 0
        v[0].i32 = reducer
        v[1].i32 = <int32_t>ptr
        v[2].i32 = <int32_t>n
        out.err = c_call(self.c.ctx, &self.f_call, v, 3, &out.trap)
        c_get_fuel(self.c.ctx, &out.fuel_left)
        if out.err != NULL or out.trap != NULL:
            return RUN_TRAP
        out.packed = v[0].i64
        return RUN_OK

    def fuel_consumed(self) -> int:
        cdef uint64_t left = 0
        cdef void* err = c_get_fuel(self.c.ctx, &left)
        if err != NULL:
            c_error_delete(err)
            return 0
        return self.fuel_limit - left

    cdef int64_t _call3(self, int32_t a, int32_t b, int32_t c, uint64_t fuel, uint64_t ticks) except? -1:
        """``stdb_call(a, b, c)`` (its i64 result; -1 may also mean a raised CallTrap)."""
        cdef val_raw vals[3]
        vals[0].i64 = 0
        vals[1].i64 = 0
        vals[2].i64 = 0
        vals[0].i32 = a
        vals[1].i32 = b
        vals[2].i32 = c
        self._invoke(&self.f_call, vals, 3, fuel, ticks)
        return vals[0].i64

    cdef val_raw _call0(self, func_t* f, uint64_t fuel, uint64_t ticks) except *:
        """A no-argument export with one result."""
        cdef val_raw vals[1]
        vals[0].i64 = 0
        self.fuel_limit = fuel
        self._invoke(f, vals, 1, fuel, ticks)
        return vals[0]

    def call_reducer(self, int reducer, bytes args, uint64_t fuel, uint64_t ticks):
        """``stdb_alloc`` the args, ``stdb_call``; returns 0 or (len << 32 | ptr) of the error
        message.  A trap raises CallTrap (out of fuel, time limit, trap, bad pointer)."""
        cdef RunOut out
        cdef int st
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(args)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(args)
        with nogil:
            st = self.run_call(reducer, p, n, fuel, ticks, &out)
        return self.outcome(st, &out, n)

    cdef object outcome(self, int st, RunOut* out, Py_ssize_t n):
        """The packed result of a run_call, or its exception."""
        if st == RUN_OK:
            return out.packed
        if st == RUN_TRAP:
            self.raise_trap(out.err, out.trap)
        if st == RUN_ALLOC_ZERO:
            raise ModuleError(f"the module's stdb_alloc({n}) returned 0 (out of memory)")
        if st == RUN_ALLOC_FAULT:
            raise MemoryFault(f"pointer {out.alloc_ptr} + length {n} is outside linear memory "
                              f"({out.size} bytes)")
        raise InternalError("fuel metering is not enabled on this engine")

    def call_raw(self, int reducer, int32_t ptr, int32_t length, uint64_t fuel, uint64_t ticks):
        """``stdb_call(reducer, ptr, length)`` with no argument copy (benchmarks, tests)."""
        self.fuel_limit = fuel
        return self._call3(reducer, ptr, length, fuel, ticks)

    def call_describe(self, uint64_t fuel, uint64_t ticks) -> int:
        return self._call0(&self.f_describe, fuel, ticks).i64

    def call_abi_version(self, uint64_t fuel, uint64_t ticks) -> int:
        return self._call0(&self.f_version, fuel, ticks).i32


cdef void _copy_struct(void* dst, obj, size_t size) except *:
    if ctypes.sizeof(obj) != size:
        raise InternalError(f"wasmtime struct {type(obj).__name__} is {ctypes.sizeof(obj)} bytes, "
                            f"stdb expects {size}: unsupported wasmtime version")
    memcpy(dst, <void*><size_t>ctypes.addressof(obj), size)


_VALTYPES = {"i": wasmtime.ValType.i32, "I": wasmtime.ValType.i64}
_CB_TYPE = _wffi.wasmtime_func_unchecked_callback_t


def instantiate(engine, module, NativeHost host, *, memory_limit: int) -> Instance:
    """A new store, linker and instance of ``module`` whose "stdb" imports run ``host``.

    Unknown imports are refused with a ModuleError naming them; the exports of
    docs/abi.md must exist with their signatures."""
    cdef Instance inst = Instance.__new__(Instance)
    cdef int i
    inst.host = host
    store = wasmtime.Store(engine)
    store.set_limits(memory_size=memory_limit)
    linker = wasmtime.Linker(engine)
    names = list(IMPORTS)
    inst.envs = <Env*>malloc(sizeof(Env) * len(names))
    if inst.envs == NULL:
        raise MemoryError()
    inst.nenvs = len(names)
    cb = ctypes.cast(ctypes.c_void_p(<size_t>&_callback), _CB_TYPE)
    for i, name in enumerate(names):
        op, params, results = IMPORTS[name]
        inst.envs[i].host = &host.h
        inst.envs[i].inst = &inst.c
        inst.envs[i].op = op
        inst.envs[i].result = {"": 0, "i": 1, "I": 2}[results]
        ty = wasmtime.FuncType([_VALTYPES[c]() for c in params], [_VALTYPES[c]() for c in results])
        mod = b"stdb"
        nm = name.encode()
        err = _wffi.wasmtime_linker_define_func_unchecked(
            linker.ptr(), ctypes.c_char_p(mod), len(mod), ctypes.c_char_p(nm), len(nm), ty.ptr(),
            cb, ctypes.c_void_p(<size_t>&inst.envs[i]),
            ctypes.cast(None, ctypes.CFUNCTYPE(None, ctypes.c_void_p)))
        if err:
            raise wasmtime.WasmtimeError._from_ptr(err)
    try:
        instance = linker.instantiate(store, module)
    except wasmtime.WasmtimeError as e:
        raise ModuleError(f"the module cannot be instantiated: {e}",
                          hint="imports must come from module \"stdb\" with the signatures of "
                               "docs/abi.md") from None
    except wasmtime.Trap as e:
        raise ModuleError(f"the module trapped while starting: {e.message}") from None
    exports = instance.exports(store)
    inst.store = store
    inst.instance = instance
    inst.linker = linker
    ctx = store._context()
    inst.c.ctx = <void*>_ptr_value(ctx)
    mem = exports.get("memory")
    if not isinstance(mem, wasmtime.Memory):
        raise ModuleError("the module exports no linear memory named 'memory'")
    _copy_struct(&inst.c.memory, mem._memory, sizeof(memory_t))
    wanted = {"stdb_alloc": ("i", "i"), "stdb_call": ("iii", "I"), "stdb_describe": ("", "I"),
              "stdb_abi_version": ("", "i")}
    for name, (params, results) in wanted.items():
        f = exports.get(name)
        if not isinstance(f, wasmtime.Func):
            raise ModuleError(f"the module does not export the function '{name}'",
                              hint="see docs/abi.md, Exports")
        ft = f.type(store)
        got = ("".join(_code(t) for t in ft.params), "".join(_code(t) for t in ft.results))
        if got != (params, results):
            raise ModuleError(f"export '{name}' has signature {_sig(*got)}, "
                              f"ABI v1 wants {_sig(params, results)}")
    _copy_struct(&inst.f_alloc, exports["stdb_alloc"]._func, sizeof(func_t))
    _copy_struct(&inst.f_call, exports["stdb_call"]._func, sizeof(func_t))
    _copy_struct(&inst.f_describe, exports["stdb_describe"]._func, sizeof(func_t))
    _copy_struct(&inst.f_version, exports["stdb_abi_version"]._func, sizeof(func_t))
    return inst


def _code(t) -> str:
    s = str(t)
    return {"i32": "i", "i64": "I"}.get(s, "?")


def _sig(params: str, results: str) -> str:
    names = {"i": "i32", "I": "i64", "?": "other"}
    return "(" + ", ".join(names[c] for c in params) + ") -> (" + ", ".join(names[c] for c in results) + ")"


def check_imports(module) -> None:
    """Refuse a module importing anything but the "stdb" functions of docs/abi.md."""
    problems = []
    for imp in module.imports:
        if imp.module != "stdb" or imp.name not in IMPORTS:
            problems.append(f"{imp.module}.{imp.name}")
            continue
        _, params, results = IMPORTS[imp.name]
        ty = imp.type
        if not isinstance(ty, wasmtime.FuncType):
            problems.append(f"stdb.{imp.name} (not a function)")
            continue
        got = ("".join(_code(t) for t in ty.params), "".join(_code(t) for t in ty.results))
        if got != (params, results):
            problems.append(f"stdb.{imp.name} with signature {_sig(*got)} (ABI v1: {_sig(params, results)})")
    if problems:
        raise ModuleError("the module imports what the host does not provide: " + ", ".join(problems),
                          hint="see docs/abi.md, Imports")
