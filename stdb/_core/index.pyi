class KeySource: ...

class HashIndex:
    name: str
    count: int
    capacity: int
    @property
    def memory_bytes(self) -> int: ...

class SortedIndex:
    name: str
    count: int
    unique: bool
    @property
    def memory_bytes(self) -> int: ...
