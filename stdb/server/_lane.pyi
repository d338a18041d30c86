from typing import final

from stdb._core.codec import RowCodec

@final
class CallLane:
    def __init__(self, reducers: dict[str, tuple[int, RowCodec]]) -> None: ...
    def parse(self, data: object) -> tuple[int, int, str, bytes] | None: ...
    def committed(self, offset: int | None, timestamp: int, reducer: str, caller: bytes,
                  request_id: int) -> bytes: ...
