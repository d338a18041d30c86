"""stdb._core.digest: CRC32C and BLAKE2b in C agree with the crc32c package and hashlib."""

import hashlib
import pathlib
import platform
import random

import crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stdb._core import digest

# The CRC32C paths: what cimporting modules get (dispatch), the SSE4.2 path, the tables.
CRC_PATHS = {
    "dispatch": digest.crc32c_py,
    "sse42": digest.crc32c_fast,
    "portable": digest.crc32c_portable,
}
needs_sse42 = pytest.mark.skipif(not digest.HAVE_SSE42, reason="no SSE4.2 on this CPU")


@pytest.fixture(params=[
    "dispatch",
    pytest.param("sse42", marks=needs_sse42),
    "portable",
])
def crc(request):
    """One CRC32C path under test."""
    return CRC_PATHS[request.param]


def _random(n, seed=0):
    return random.Random(seed * 1_000_003 + n).randbytes(n)


# ---------------------------------------------------------------- CRC32C


def test_crc32c_known_vector(crc):
    assert crc(b"123456789") == 0xE3069283
    assert crc(b"") == 0
    assert crc(b"", 0xDEADBEEF) == 0xDEADBEEF


@pytest.mark.skipif(not pathlib.Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo")
def test_dispatch_finds_sse42():
    # the run-time detection agrees with what the kernel says the CPU has
    flags = pathlib.Path("/proc/cpuinfo").read_text().split()
    on_x86 = platform.machine() in ("x86_64", "AMD64")
    assert digest.HAVE_SSE42 == (on_x86 and "sse4_2" in flags)


def test_crc32c_every_length_0_to_300(crc):
    for n in range(301):
        data = _random(n)
        assert crc(data) == crc32c.crc32c(data), n


def test_crc32c_around_the_three_stream_blocks(crc):
    # lengths around 3 * SHORT and 3 * LONG (and multiples) exercise the interleaved streams
    # and the shift tables that join them, with every kind of tail after them
    short, long = digest.CRC32C_SHORT_BLOCK, digest.CRC32C_LONG_BLOCK
    for base in (3 * short, 6 * short, 3 * long, 3 * long + 3 * short, 6 * long):
        for n in range(base - 9, base + 18):
            data = _random(n, 1)
            assert crc(data) == crc32c.crc32c(data), n


def test_crc32c_unaligned_starts(crc):
    data = _random(5000, 2)
    mv = memoryview(data)
    for off in range(1, 8):
        for n in (0, 1, 7, 8, 9, 63, 64, 65, 767, 768, 800, 4000):
            piece = mv[off:off + n]
            assert crc(piece) == crc32c.crc32c(piece), (off, n)


def test_crc32c_continues_from_previous_value(crc):
    data = _random(70_000, 3)
    whole = crc32c.crc32c(data)
    for cut in (0, 1, 5, 8, 100, 768, 1000, 24_576, 30_001, 70_000):
        head = crc(data[:cut])
        assert head == crc32c.crc32c(data[:cut])
        assert crc(data[cut:], head) == whole, cut
    # continuing from arbitrary values, not only from CRCs of a prefix
    for start in (1, 0x12345678, 0xFFFFFFFF):
        assert crc(data[:999], start) == crc32c.crc32c(data[:999], start)


def test_crc32c_megabytes(crc):
    data = _random(3 * 1024 * 1024 + 77, 4)
    assert crc(data) == crc32c.crc32c(data)
    assert crc(memoryview(data)[3:], 0xABCDEF) == crc32c.crc32c(memoryview(data)[3:], 0xABCDEF)


def test_crc32c_buffer_kinds(crc):
    data = _random(1000, 5)
    want = crc32c.crc32c(data)
    assert crc(data) == want
    assert crc(bytearray(data)) == want
    assert crc(memoryview(data)) == want
    assert crc(memoryview(bytearray(data))) == want
    assert crc(memoryview(data).cast("I", (250,))) == want  # any contiguous format


def test_crc32c_rejects(crc):
    with pytest.raises(TypeError):
        crc("text")
    with pytest.raises(BufferError):
        crc(memoryview(b"abcdef")[::2])
    with pytest.raises(OverflowError):
        crc(b"a", -1)
    with pytest.raises(OverflowError):
        crc(b"a", 1 << 32)


def test_crc32c_fast_refuses_without_sse42():
    if digest.HAVE_SSE42:
        assert digest.crc32c_fast(b"123456789") == 0xE3069283
    else:
        with pytest.raises(RuntimeError):
            digest.crc32c_fast(b"")


@given(data=st.binary(max_size=5000), start=st.integers(0, 0xFFFFFFFF), off=st.integers(0, 7))
def test_crc32c_hypothesis(data, start, off):
    piece = memoryview(data)[min(off, len(data)):]
    want = crc32c.crc32c(piece, start)
    assert digest.crc32c_py(piece, start) == want
    assert digest.crc32c_portable(piece, start) == want
    if digest.HAVE_SSE42:
        assert digest.crc32c_fast(piece, start) == want


# ---------------------------------------------------------------- BLAKE2b

BLAKE_LENGTHS = [0, 1, 63, 64, 127, 128, 129, 255, 256, 257, 383, 384, 385, 1000, 1 << 20]


def test_blake2b_rfc7693_vector():
    # RFC 7693 appendix A: BLAKE2b-512("abc")
    assert digest.blake2b_py(b"abc") == bytes.fromhex(
        "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
        "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923")
    assert digest.blake2b_py(b"abc", 64) == hashlib.blake2b(b"abc").digest()


@pytest.mark.parametrize("n", BLAKE_LENGTHS)
def test_blake2b_every_digest_size(n):
    data = _random(n, 6)
    for k in range(1, 65):
        assert digest.blake2b_py(data, k) == hashlib.blake2b(data, digest_size=k).digest(), (n, k)


def test_blake2b_every_length_to_600():
    for n in range(601):
        data = _random(n, 7)
        for k in (8, 32, 64):
            assert digest.blake2b_py(data, k) == hashlib.blake2b(data, digest_size=k).digest(), (n, k)


def test_blake2b_buffer_kinds_and_unaligned():
    data = _random(3000, 8)
    mv = memoryview(data)
    for off in range(8):
        piece = mv[off:off + 257]
        want = hashlib.blake2b(piece, digest_size=16).digest()
        assert digest.blake2b_py(piece, 16) == want
        assert digest.blake2b_py(bytearray(piece), 16) == want
    assert digest.blake2b_py(mv.cast("Q", (375,))) == hashlib.blake2b(data).digest()


def test_blake2b_rejects():
    for k in (0, 65, -1):
        with pytest.raises(ValueError):
            digest.blake2b_py(b"x", k)
    with pytest.raises(TypeError):
        digest.blake2b_py("text")
    with pytest.raises(BufferError):
        digest.blake2b_py(memoryview(b"abcdef")[::2])


@given(data=st.binary(max_size=2000), k=st.integers(1, 64))
def test_blake2b_hypothesis(data, k):
    assert digest.blake2b_py(data, k) == hashlib.blake2b(data, digest_size=k).digest()
