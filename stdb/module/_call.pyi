from collections.abc import Callable, Sequence
from typing import Any, ClassVar, final

from stdb._core.codec import RowCodec
from stdb._core.txn import NativeTx
from stdb.module._host import NativeHost
from stdb.module._wasm import Instance
from stdb.module.database import Database
from stdb.module.describe import ModuleSchema
from stdb.module.host import Limits
from stdb.query.subscription import QueryDiff, Subscriptions
from stdb.storage.datastore import Transaction, TxDelta
from stdb.storage.durable import DurableStore

@final
class CallResult:
    reducer: str
    offset: int | None
    fuel_used: int
    timestamp: int
    duration_s: float
    updates: dict[int, QueryDiff]
    __hash__: ClassVar[None]  # type: ignore[assignment]
    def __init__(self, reducer: str, offset: int | None, delta: TxDelta | None, fuel_used: int,
                 timestamp: int, duration_s: float, updates: dict[int, QueryDiff] | None = None) -> None: ...
    @property
    def delta(self) -> TxDelta: ...
    @delta.setter
    def delta(self, value: TxDelta | None) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class CallPath:
    inst: Instance | None
    host: NativeHost | None
    limits: Limits
    def __init__(self, db: Database, default_clock: Callable[[], int], tick_seconds: float) -> None: ...
    @property
    def core(self) -> NativeTx: ...
    @property
    def fuel_used(self) -> int: ...
    def attach(self, store: DurableStore, subs: Subscriptions, schema: ModuleSchema | None,
               codecs: Sequence[RowCodec]) -> None: ...
    def timestamp(self, ts: int | None) -> int: ...
    def call(self, reducer: str, args: Sequence[Any] = (), *, sender: bytes = ...,
             connection_id: bytes | None = None, timestamp: int | None = None) -> CallResult: ...
    def call_encoded(self, idx: int, raw: bytes, sender: bytes,
                     connection_id: bytes | None) -> CallResult: ...
    def callable_reducers(self) -> dict[str, tuple[int, RowCodec]]: ...
    def run(self, idx: int, args: Sequence[Any], sender: bytes, connection_id: bytes | None,
            timestamp: int | None, before_commit: Callable[[Transaction], object] | None) -> CallResult: ...
    def set_timing(self, on: bool) -> None: ...
    def timings(self) -> dict[str, float]: ...
