class Layout:
    ncols: int
    capacity: int
    bitmap_bytes: int
    heap_start: int
    fixed_row_bytes: int
    types: tuple[object, ...]
    @property
    def heap_capacity(self) -> int: ...

class Page:
    size: int
    count: int
    high: int
    heap_top: int
    heap_dead: int
    compactions: int
