"""Codec speed: encode + decode round trip, ours vs a naive msgpack list-of-floats baseline.

Run: ``.venv/bin/pytest bench/test_bench_codec.py`` (ratios printed at the end);
smoke test: ``--benchmark-disable``.
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from tormentor.engine import protocol as P
from tormentor.transport.codec import decode, encode

MAX_BYTES = 16 * 1024 * 1024
_MEDIANS: dict[tuple[str, str], float] = {}


def _messages():
    rng = np.random.default_rng(12345)
    update = P.Update(model_id="model-1", token=rng.bytes(32), base=rng.bytes(32),
                      nonce=2**63 + 17, delta=rng.normal(size=24))
    curate = P.Curate(task=P.TaskSpec(n_features=24),
                      validation_x=rng.normal(size=(9_000, 24)),
                      validation_y=np.sign(rng.normal(size=9_000)))
    return {"update_d24": update, "curate_9000x24": curate}


MESSAGES = _messages()


def ours_round_trip(message):
    return decode(encode(message), max_bytes=MAX_BYTES)


def _naive_value(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "__dataclass_fields__"):
        return {name: _naive_value(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


def naive_round_trip(message):
    """The baseline: floats as msgpack lists, arrays rebuilt with np.array, no validation."""
    fields = {"v": 1, "t": message.TYPE, **_naive_value(message)}
    data = msgpack.unpackb(msgpack.packb(fields))
    return {key: np.array(value, dtype=np.float64) if isinstance(value, list) else value
            for key, value in data.items()}


def raw_round_trip(message):
    """The floor: arrays as raw bytes, no validation, no dataclass (nats-facts' 1.8 us)."""
    fields = {"v": 1, "t": message.TYPE}
    for name in message.__dataclass_fields__:
        value = getattr(message, name)
        if isinstance(value, np.ndarray):
            value = value.tobytes()
        elif hasattr(value, "__dataclass_fields__"):
            value = _naive_value(value)
        fields[name] = value
    data = msgpack.unpackb(msgpack.packb(fields))
    return {key: np.frombuffer(value) if isinstance(value, bytes) and len(value) > 64 else value
            for key, value in data.items()}


IMPLEMENTATIONS = {"naive_list": naive_round_trip, "raw_bytes": raw_round_trip,
                   "ours": ours_round_trip}


@pytest.mark.parametrize("name", list(MESSAGES))
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_round_trip(benchmark, impl, name):
    message = MESSAGES[name]
    result = benchmark(IMPLEMENTATIONS[impl], message)
    if impl == "ours":
        field = "delta" if name == "update_d24" else "validation_x"
        np.testing.assert_array_equal(getattr(result, field), getattr(message, field))
    if not benchmark.disabled and benchmark.stats is not None:
        _MEDIANS[(impl, name)] = benchmark.stats.stats.median


def test_print_ratios(capsys):
    """Print ours vs the baseline (runs last in this file; skipped when disabled)."""
    if not _MEDIANS:
        pytest.skip("benchmarks disabled: no timings to compare")
    with capsys.disabled():
        print()
        for name in MESSAGES:
            ours, naive = _MEDIANS.get(("ours", name)), _MEDIANS.get(("naive_list", name))
            raw = _MEDIANS.get(("raw_bytes", name))
            if ours and naive and raw:
                print(f"codec {name}: ours {ours * 1e6:.1f} us, naive list-of-floats "
                      f"{naive * 1e6:.1f} us (ours x{naive / ours:.1f} faster), raw bytes "
                      f"without validation {raw * 1e6:.1f} us (validation costs x{ours / raw:.1f})"
                      " [noisy: shared 2-core host]")
