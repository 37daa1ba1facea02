"""Ring buffer: write / read / wrap / overflow / flush semantics (pure numpy, no audio)."""

import threading

import numpy as np
import pytest

from talkie.audio.ring import Ring


def read_all(ring: Ring, block: int = 7) -> np.ndarray:
    out, parts = np.zeros(block, dtype=np.int16), []
    while (n := ring.read_into(out)) > 0:
        parts.append(out[:n].copy())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def test_write_then_read_returns_the_same_samples():
    ring = Ring(16)
    data = np.arange(10, dtype=np.int16)
    assert ring.write(data) == 10
    assert ring.available() == 10 and ring.free() == 6
    out = np.full(4, -1, dtype=np.int16)
    assert ring.read_into(out) == 4
    assert out.tolist() == [0, 1, 2, 3]
    assert read_all(ring).tolist() == list(range(4, 10))
    assert ring.available() == 0 and ring.written == 10 and ring.read == 10


def test_short_read_leaves_rest_of_output_untouched():
    ring = Ring(8)
    ring.write(np.array([5, 6], dtype=np.int16))
    out = np.full(5, 99, dtype=np.int16)
    assert ring.read_into(out) == 2
    assert out.tolist() == [5, 6, 99, 99, 99]
    assert ring.read_into(out) == 0


def test_wraps_around_many_times_without_corruption():
    rng = np.random.default_rng(0)
    ring = Ring(100)
    source = rng.integers(-32768, 32767, 20_000, dtype=np.int16)
    got, pos = [], 0
    out = np.zeros(64, dtype=np.int16)
    while pos < len(source) or ring.available():
        k = int(rng.integers(1, 90))
        chunk = source[pos:pos + min(k, ring.free())]
        pos += ring.write(chunk)
        n = ring.read_into(out[: int(rng.integers(1, 64))])
        got.append(out[:n].copy())
    assert np.array_equal(np.concatenate(got), source)
    assert ring.overflows == 0


def test_overflow_drops_newest_samples_and_counts_them():
    ring = Ring(10)
    assert ring.write(np.arange(6, dtype=np.int16)) == 6
    assert ring.write(np.arange(100, 108, dtype=np.int16)) == 4
    assert ring.overflows == 4
    assert ring.write(np.array([1], dtype=np.int16)) == 0
    assert ring.overflows == 5
    assert read_all(ring).tolist() == [0, 1, 2, 3, 4, 5, 100, 101, 102, 103]
    assert ring.write(np.arange(3, dtype=np.int16)) == 3  # room again after reading


def test_flush_discards_unread_samples_on_next_read():
    ring = Ring(32)
    ring.write(np.arange(20, dtype=np.int16))
    out = np.zeros(5, dtype=np.int16)
    ring.read_into(out)
    ring.flush()
    assert ring.available() == 0  # the producer sees the flush at once
    assert ring.free() == 32
    assert ring.read_into(out) == 0  # the consumer applies it on its next read
    assert ring.read == 20


def test_samples_written_after_flush_survive_it():
    ring = Ring(16)
    ring.write(np.arange(12, dtype=np.int16))
    ring.flush()
    # The consumer has not run yet, but the freed room is usable immediately.
    assert ring.write(np.arange(100, 116, dtype=np.int16)) == 16
    assert ring.overflows == 0
    assert read_all(ring).tolist() == list(range(100, 116))


def test_flush_twice_before_the_consumer_runs():
    ring = Ring(16)
    ring.write(np.arange(4, dtype=np.int16))
    ring.flush()
    ring.write(np.arange(10, 14, dtype=np.int16))
    ring.flush()
    ring.write(np.arange(20, 22, dtype=np.int16))
    assert read_all(ring).tolist() == [20, 21]


def test_flush_with_nothing_pending_is_harmless():
    ring = Ring(8)
    ring.flush()
    ring.write(np.arange(3, dtype=np.int16))
    assert read_all(ring).tolist() == [0, 1, 2]


def test_rejects_bad_capacity():
    with pytest.raises(ValueError):
        Ring(0)


def test_concurrent_producer_and_consumer_keep_order():
    total, ring = 300_000, Ring(4096)
    source = (np.arange(total) % 65536 - 32768).astype(np.int16)
    got = []

    def consume():
        out = np.zeros(256, dtype=np.int16)
        n_seen = 0
        while n_seen < total:
            n = ring.read_into(out)
            if n:
                got.append(out[:n].copy())
                n_seen += n

    reader = threading.Thread(target=consume)
    reader.start()
    pos = 0
    while pos < total:
        pos += ring.write(source[pos:pos + min(1000, ring.free())])
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert np.array_equal(np.concatenate(got), source)
    assert ring.overflows == 0


# ---- the same ring as a history (what the speaker played, the pre-roll, the envelopes)


def test_a_history_keeps_the_newest_values_and_reads_any_span_by_position():
    ring = Ring(8)
    ring.push(np.arange(5, dtype=np.int16))
    assert ring.written == 5 and ring.latest(3).tolist() == [2, 3, 4]
    ring.push(np.arange(5, 11, dtype=np.int16))  # wraps: 0, 1 and 2 are overwritten
    assert ring.written == 11 and ring.latest(8).tolist() == list(range(3, 11))
    # positions name samples for good: gone (0..2) and not yet written (11..) read as fill
    assert ring.window(1, 5).tolist() == [0, 0, 3, 4, 5]
    assert ring.window(9, 4).tolist() == [9, 10, 0, 0]


def test_a_push_longer_than_the_ring_keeps_its_tail_at_the_right_positions():
    ring = Ring(4)
    ring.push(np.arange(10, dtype=np.int16))
    assert ring.written == 10 and ring.latest(4).tolist() == [6, 7, 8, 9]
    assert ring.window(6, 4).tolist() == [6, 7, 8, 9]


def test_a_float_history_with_a_fill_value_and_clear():
    ring = Ring(3, dtype=np.float64, fill=-120.0)
    for value in (1.0, 2.0, 3.0, 4.0):
        ring.append(value)
    assert ring.latest(3).tolist() == [2.0, 3.0, 4.0]
    assert ring.window(-2, 3).tolist() == [-120.0, -120.0, -120.0]
    ring.clear()
    assert ring.written == 0 and ring.latest(3).tolist() == [-120.0] * 3


def resident_bytes(array: np.ndarray) -> int:
    """How much of ``array``'s memory is resident, counted by the kernel (mincore(2))."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    addr = array.__array_interface__["data"][0]
    start = addr - addr % page
    length = addr + array.nbytes - start
    vec = (ctypes.c_ubyte * ((length + page - 1) // page))()
    assert libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), vec) == 0, ctypes.get_errno()
    return sum(b & 1 for b in vec) * page


def test_a_long_queue_is_resident_only_where_written_and_gives_it_back_once_read():
    ring = Ring(4 << 20)  # 8 MB of int16: its own mapping
    assert resident_bytes(ring._buf) == 0
    data = np.arange(1 << 20, dtype=np.int16)  # 2 MB
    ring.write(data)
    assert 2 << 20 <= resident_bytes(ring._buf) < 3 << 20
    out = np.zeros(1 << 16, dtype=np.int16)
    first = ring.read_into(out)
    assert not ring.release()  # something is left to read: nothing is given back
    assert resident_bytes(ring._buf) >= 2 << 20
    rest = read_all(ring, block=1 << 16)
    assert first + len(rest) == 1 << 20 and rest.tolist() == data[first:].tolist()
    assert ring.release()
    assert resident_bytes(ring._buf) == 0
    assert not ring._buf[: 1 << 20].any()  # given back, not kept aside: what was read is gone
    # the queue goes on where it was, the new samples in pages touched afresh
    data = np.arange(5000, dtype=np.int16)
    assert ring.write(data) == 5000 and ring.written == (1 << 20) + 5000
    assert read_all(ring).tolist() == data.tolist()


def test_a_short_ring_or_a_history_keeps_its_pages():
    short = Ring(1000)
    short.write(np.ones(10, dtype=np.int16))
    read_all(short)
    assert not short.release()
    history = Ring(4 << 20)
    history.push(np.ones(1 << 20, dtype=np.int16))
    assert not history.release()  # never read: a history is never "drained"
    assert history.latest(3).tolist() == [1, 1, 1]
