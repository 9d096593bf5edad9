"""Wire codec: round trips, recorded frames, every malformed variant, fuzzing."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tormentor.engine import protocol as P
from tormentor.engine.protocol import REPLY_TYPES, REQUEST_TYPES, ErrorCode, ProtocolError
from tormentor.transport import codec
from tormentor.transport.codec import (
    MAX_BIN_BYTES,
    MAX_DICT_ENTRIES,
    MAX_STR_CHARS,
    WireError,
    decode,
    encode,
)

MAX = 16 * 1024 * 1024
ALL_TYPES = tuple(REQUEST_TYPES) + tuple(REPLY_TYPES)


# --------------------------------------------------------------------------- helpers


def assert_same(a, b, path="message"):
    """Field-by-field equality (dataclass __eq__ cannot compare ndarrays)."""
    assert type(a) is type(b), path
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert b.dtype == np.float64 and a.shape == b.shape, path
        assert a.tobytes() == b.tobytes(), path  # bit-exact, -0.0 included
    elif isinstance(a, float):
        assert math.copysign(1, a) == math.copysign(1, b) and a == b, path
    else:
        assert a == b, path


def frame(**fields):
    """A hand-built msgpack map (the recorded-frame style of a foreign encoder)."""
    return msgpack.packb(fields, use_bin_type=True)


def good_update_map(**overrides):
    m = {"v": 1, "t": "update", "model_id": "m-1", "token": b"\x01" * 32, "base": b"\x02" * 16,
         "nonce": 7, "delta": np.arange(24, dtype="<f8").tobytes()}
    m.update(overrides)
    return m


def good_curate_map(task_overrides=None, defences_overrides=None, **overrides):
    task = {
        "n_features": 3, "model_type": "logistic", "min_clients": 1, "max_clients": 10,
        "aggregation": "async", "max_staleness": None, "client_timeout_s": 30.0,
        "stopping": {"max_updates": 100, "deadline_s": None, "target_error": None,
                     "plateau_patience": None, "eval_every": 10, "plateau_min_delta": 0.001},
        "defences": {"admission_bits": 16, "update_bits": 4, "adaptive_pow": True,
                     "penalty_bits": 4, "max_bits": 32, "validator": True,
                     "validation_rate": 0.1, "roni_threshold": 0.02, "evict_after": None,
                     "apply_validation_updates": True, "k_gate": True, "max_latency_s": 0.0},
    }
    task["defences"].update(defences_overrides or {})
    task.update(task_overrides or {})
    m = {"v": 1, "t": "curate", "task": task,
         "validation_x": {"rows": 2, "cols": 3, "data": np.ones(6).tobytes()},
         "validation_y": np.array([1.0, -1.0]).tobytes()}
    m.update(overrides)
    return m


def wire_error(data, accept=REQUEST_TYPES, max_bytes=MAX):
    with pytest.raises(WireError) as info:
        decode(data, accept=accept, max_bytes=max_bytes)
    return info.value


# --------------------------------------------------------------------------- strategies

finite = st.floats(allow_nan=False, allow_infinity=False)
int64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=40)
blob = st.binary(max_size=64)


def vectors(max_size=40):
    return st.lists(finite, max_size=max_size).map(lambda xs: np.array(xs, dtype=np.float64))


matrices = st.tuples(st.integers(0, 6), st.integers(0, 6)).flatmap(
    lambda shape: st.lists(finite, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1])
    .map(lambda xs, shape=shape: np.array(xs, dtype=np.float64).reshape(shape)))

stopping_rules = st.builds(
    P.StoppingRule,
    max_updates=st.integers(1, 2**40),
    deadline_s=st.none() | st.floats(0.001, 1e9),
    target_error=st.none() | st.floats(0.0, 1.0),
    plateau_patience=st.none() | st.integers(1, 1000),
    eval_every=st.integers(1, 10_000),
    plateau_min_delta=st.floats(0.0, 1.0),
)
defences = st.integers(0, 64).flatmap(lambda max_bits: st.builds(
    P.Defences,
    admission_bits=st.integers(0, 64),
    update_bits=st.integers(0, max_bits),
    adaptive_pow=st.booleans(),
    penalty_bits=st.integers(0, 64),
    max_bits=st.just(max_bits),
    validator=st.booleans(),
    validation_rate=st.floats(0.0, 1.0),
    roni_threshold=st.floats(0.0, 1.0),
    evict_after=st.none() | st.integers(1, 100),
    apply_validation_updates=st.booleans(),
    k_gate=st.booleans(),
    max_latency_s=st.floats(0.0, 60.0),
))
tasks = st.integers(1, 100).flatmap(lambda min_clients: st.builds(
    P.TaskSpec,
    n_features=st.integers(1, 1_000_000),
    model_type=st.just("logistic"),
    min_clients=st.just(min_clients),
    max_clients=st.integers(min_clients, 10_000),
    aggregation=st.sampled_from(["async", "sync"]),
    max_staleness=st.none() | st.integers(0, 1000),
    client_timeout_s=st.floats(0.001, 1e6),
    stopping=stopping_rules,
    defences=defences,
))
progresses = st.builds(
    P.Progress, version=int64, updates_accepted=int64,
    updates_rejected=st.dictionaries(text, int64, max_size=5), validation_error=finite,
    active_clients=int64, penalties=int64, evictions=int64, elapsed_s=finite,
    done=st.booleans(), stop_reason=text)

MESSAGES = {
    P.Curate: st.builds(P.Curate, task=tasks, validation_x=matrices, validation_y=vectors()),
    P.Status: st.builds(P.Status, model_id=text, secret=blob),
    P.Fetch: st.builds(P.Fetch, model_id=text, secret=blob),
    P.Join: st.builds(P.Join, model_id=text, n_features=int64, k=int64),
    P.Solve: st.builds(P.Solve, model_id=text, join_id=blob, nonce=st.integers(0, 2**64 - 1)),
    P.Update: st.builds(P.Update, model_id=text, token=blob, base=blob,
                        nonce=st.integers(0, 2**64 - 1), delta=vectors()),
    P.Leave: st.builds(P.Leave, model_id=text, token=blob),
    P.Curated: st.builds(P.Curated, model_id=text, secret=blob),
    P.Progress: progresses,
    P.Final: st.builds(P.Final, weights=vectors(), progress=progresses),
    P.Challenge: st.builds(P.Challenge, join_id=blob, puzzle=blob, bits=int64),
    P.Admitted: st.builds(P.Admitted, token=blob, weights=vectors(), puzzle=blob, bits=int64),
    P.Work: st.builds(P.Work, weights=vectors(), puzzle=blob, bits=int64),
    P.Wait: st.builds(P.Wait, retry_after_s=finite, reason=text),
    P.Done: st.builds(P.Done, reason=text),
    P.Error: st.builds(P.Error, code=st.sampled_from([c.value for c in ErrorCode]),
                       message=text),
}


def test_every_message_type_has_a_strategy():
    assert set(MESSAGES) == set(ALL_TYPES)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_every_message_type(cls, data):
    message = data.draw(MESSAGES[cls])
    accept = REQUEST_TYPES if cls in REQUEST_TYPES else REPLY_TYPES
    decoded = decode(encode(message), accept=accept, max_bytes=MAX)
    assert_same(message, decoded)


def test_recorded_join_frame_is_stable():
    # Pinned bytes: a change here is a wire-format change (bump PROTOCOL_VERSION).
    recorded = bytes.fromhex(
        "85a17601a174a46a6f696ea86d6f64656c5f6964a36d2d31aa6e5f666561747572657318a16b05")
    message = decode(recorded, max_bytes=1024)
    assert message == P.Join(model_id="m-1", n_features=24, k=5)
    assert encode(message) == recorded


def test_hand_built_frames_decode():
    update = decode(frame(**good_update_map()), max_bytes=MAX)
    assert update.nonce == 7 and update.base == b"\x02" * 16
    np.testing.assert_array_equal(update.delta, np.arange(24.0))
    curate = decode(frame(**good_curate_map()), max_bytes=MAX)
    assert curate.task.defences.max_bits == 32 and curate.task.stopping.eval_every == 10
    assert curate.validation_x.shape == (2, 3)
    # Fields may come in any order (a map, not a list).
    reordered = dict(reversed(list(good_update_map().items())))
    assert decode(frame(**reordered), max_bytes=MAX).nonce == 7


def test_decoded_arrays_are_read_only_views():
    message = decode(frame(**good_update_map()), max_bytes=MAX)
    assert not message.delta.flags.writeable
    with pytest.raises(ValueError):
        message.delta[0] = 1.0
    curate = decode(frame(**good_curate_map()), max_bytes=MAX)
    assert not curate.validation_x.flags.writeable


def test_int_in_float_field_is_accepted_as_float():
    message = decode(frame(v=1, t="wait", retry_after_s=3, reason="k"), accept=REPLY_TYPES,
                     max_bytes=MAX)
    assert message.retry_after_s == 3.0 and type(message.retry_after_s) is float


def test_missing_field_with_default_takes_the_default():
    m = good_curate_map()
    del m["task"]["defences"]["max_latency_s"]
    del m["task"]["model_type"]
    message = decode(frame(**m), max_bytes=MAX)
    assert message.task.defences.max_latency_s == P.Defences().max_latency_s
    assert message.task.model_type == "logistic"


def test_uint64_nonce_bounds():
    assert decode(frame(**good_update_map(nonce=2**64 - 1)), max_bytes=MAX).nonce == 2**64 - 1
    assert decode(frame(**good_update_map(nonce=0)), max_bytes=MAX).nonce == 0


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like_input(kind):
    data = kind(frame(**good_update_map()))
    assert decode(data, max_bytes=MAX).nonce == 7


# --------------------------------------------------------------------------- malformed


NAN = float("nan")
INF = float("inf")


def _nan_bytes(n, bad):
    x = np.zeros(n)
    x[n // 2] = bad
    return x.tobytes()


MALFORMED_CASES = {
    # name: (bytes, accept, code, path or None, fragment of the message or None)
    "empty": (b"", REQUEST_TYPES, ErrorCode.MALFORMED, "", None),
    "garbage": (b"\xc1\xc1\xc1", REQUEST_TYPES, ErrorCode.MALFORMED, "", None),
    "not a map (array)": (msgpack.packb([1, 2, 3]), REQUEST_TYPES, ErrorCode.MALFORMED, "",
                          "must be a msgpack map, got array"),
    "not a map (int)": (msgpack.packb(5), REQUEST_TYPES, ErrorCode.MALFORMED, "", None),
    "trailing bytes": (frame(**good_update_map()) + b"\x00", REQUEST_TYPES,
                       ErrorCode.MALFORMED, "", None),
    "invalid utf-8": (b"\x81\xa1t\xa2\xff\xfe", REQUEST_TYPES, ErrorCode.MALFORMED, "", None),
    "ext type": (b"\x81\xa1v\xd6\xff\x00\x00\x00\x01", REQUEST_TYPES, ErrorCode.MALFORMED, "",
                 None),
    "int map key": (b"\x81\x01\x01", REQUEST_TYPES, ErrorCode.MALFORMED, "", None),
    "deeply nested arrays": (b"\x91" * 20_000 + b"\x00", REQUEST_TYPES, ErrorCode.MALFORMED,
                             "", None),
    "deeply nested maps": (b"\x81\xa1a" * 20_000 + b"\x00", REQUEST_TYPES,
                           ErrorCode.MALFORMED, "", None),
    "missing v": (frame(t="join", model_id="m", n_features=1, k=1), REQUEST_TYPES,
                  ErrorCode.BAD_VERSION, "", "missing protocol version"),
    "v=2": (frame(**{**good_update_map(), "v": 2}), REQUEST_TYPES, ErrorCode.BAD_VERSION, "",
            "version 2 not supported"),
    "v=true": (frame(**{**good_update_map(), "v": True}), REQUEST_TYPES,
               ErrorCode.BAD_VERSION, "", None),
    "v='1'": (frame(**{**good_update_map(), "v": "1"}), REQUEST_TYPES, ErrorCode.BAD_VERSION,
              "", None),
    "missing t": (frame(v=1, model_id="m"), REQUEST_TYPES, ErrorCode.UNKNOWN_TYPE, "", None),
    "unknown t": (frame(**good_update_map(t="upgrade")), REQUEST_TYPES,
                  ErrorCode.UNKNOWN_TYPE, "", "unknown message type"),
    "t not str": (frame(**good_update_map(t=3)), REQUEST_TYPES, ErrorCode.UNKNOWN_TYPE, "",
                  None),
    "reply where request required": (
        frame(v=1, t="done", reason="x"), REQUEST_TYPES, ErrorCode.UNKNOWN_TYPE, "",
        "reply type 'done' not accepted"),
    "request where reply required": (
        frame(**good_update_map()), REPLY_TYPES, ErrorCode.UNKNOWN_TYPE, "",
        "request type 'update' not accepted"),
    "missing field": (frame(**{k: v for k, v in good_update_map().items() if k != "nonce"}),
                      REQUEST_TYPES, ErrorCode.BAD_FIELD, "nonce", "missing field"),
    "extra field": (frame(**good_update_map(extra=1)), REQUEST_TYPES, ErrorCode.BAD_FIELD, "",
                    "unexpected field(s) 'extra'"),
    "nested wrong type": (frame(**good_curate_map(defences_overrides={"max_bits": "32"})),
                          REQUEST_TYPES, ErrorCode.BAD_FIELD, "task.defences.max_bits",
                          "task.defences.max_bits: expected int, got str"),
    "nested extra field": (frame(**good_curate_map(defences_overrides={"turbo": True})),
                           REQUEST_TYPES, ErrorCode.BAD_FIELD, "task.defences", "'turbo'"),
    "nested missing required": (
        frame(**good_curate_map(task_overrides={"n_features": None})), REQUEST_TYPES,
        ErrorCode.BAD_FIELD, "task.n_features", "expected int, got nil"),
    "nested not a map": (frame(**good_curate_map(task_overrides={"stopping": [1, 2]})),
                         REQUEST_TYPES, ErrorCode.BAD_FIELD, "task.stopping",
                         "expected map (StoppingRule), got array"),
    "bool for int": (frame(v=1, t="join", model_id="m", n_features=3, k=True), REQUEST_TYPES,
                     ErrorCode.BAD_FIELD, "k", "expected int, got bool"),
    "int for bool": (frame(**good_curate_map(defences_overrides={"validator": 1})),
                     REQUEST_TYPES, ErrorCode.BAD_FIELD, "task.defences.validator",
                     "expected bool, got int"),
    "bool for float": (frame(v=1, t="wait", retry_after_s=True, reason=""), REPLY_TYPES,
                       ErrorCode.BAD_FIELD, "retry_after_s", "expected float, got bool"),
    "str for float": (frame(v=1, t="wait", retry_after_s="1", reason=""), REPLY_TYPES,
                      ErrorCode.BAD_FIELD, "retry_after_s", None),
    "huge int (uint64 in int64 field)": (
        frame(v=1, t="join", model_id="m", n_features=2**64 - 1, k=1), REQUEST_TYPES,
        ErrorCode.BAD_FIELD, "n_features", "out of range"),
    "int beyond 2**53 for float": (frame(v=1, t="wait", retry_after_s=2**60, reason=""),
                                   REPLY_TYPES, ErrorCode.BAD_FIELD, "retry_after_s", None),
    "negative nonce": (frame(**good_update_map(nonce=-1)), REQUEST_TYPES,
                       ErrorCode.BAD_FIELD, "nonce", "out of range 0..2**64-1"),
    "str for bytes": (frame(**good_update_map(token="abc")), REQUEST_TYPES,
                      ErrorCode.BAD_FIELD, "token", "expected bin, got str"),
    "str too long": (frame(**good_update_map(model_id="x" * (MAX_STR_CHARS + 1))),
                     REQUEST_TYPES, ErrorCode.BAD_FIELD, "model_id", None),
    "bytes too long": (frame(**good_update_map(token=b"x" * (MAX_BIN_BYTES + 1))),
                       REQUEST_TYPES, ErrorCode.BAD_FIELD, "token", None),
    "vector not multiple of 8": (frame(**good_update_map(delta=b"\x00" * 23)), REQUEST_TYPES,
                                 ErrorCode.BAD_FIELD, "delta", "not a multiple of 8"),
    "vector as list": (frame(**good_update_map(delta=[0.0, 1.0])), REQUEST_TYPES,
                       ErrorCode.BAD_FIELD, "delta", "got array"),
    "NaN in vector": (frame(**good_update_map(delta=_nan_bytes(24, NAN))), REQUEST_TYPES,
                      ErrorCode.NON_FINITE, "delta", None),
    "inf in vector": (frame(**good_update_map(delta=_nan_bytes(24, INF))), REQUEST_TYPES,
                      ErrorCode.NON_FINITE, "delta", None),
    "-inf in vector": (frame(**good_update_map(delta=_nan_bytes(24, -INF))), REQUEST_TYPES,
                       ErrorCode.NON_FINITE, "delta", None),
    "NaN in large vector": (frame(**good_update_map(delta=_nan_bytes(20_000, NAN))),
                            REQUEST_TYPES, ErrorCode.NON_FINITE, "delta", None),
    "NaN in matrix": (frame(**good_curate_map(validation_x={
        "rows": 2, "cols": 3, "data": _nan_bytes(6, NAN)})), REQUEST_TYPES,
        ErrorCode.NON_FINITE, "validation_x", None),
    "inf in matrix": (frame(**good_curate_map(validation_x={
        "rows": 3, "cols": 2, "data": _nan_bytes(6, INF)})), REQUEST_TYPES,
        ErrorCode.NON_FINITE, "validation_x", None),
    "matrix shape mismatch": (frame(**good_curate_map(validation_x={
        "rows": 2, "cols": 4, "data": np.ones(6).tobytes()})), REQUEST_TYPES,
        ErrorCode.BAD_FIELD, "validation_x", "rows*cols*8"),
    "matrix negative rows": (frame(**good_curate_map(validation_x={
        "rows": -2, "cols": -3, "data": np.ones(6).tobytes()})), REQUEST_TYPES,
        ErrorCode.BAD_FIELD, "validation_x.rows", None),
    "matrix extra key": (frame(**good_curate_map(validation_x={
        "rows": 2, "cols": 3, "data": np.ones(6).tobytes(), "order": "F"})), REQUEST_TYPES,
        ErrorCode.BAD_FIELD, "validation_x", None),
    "NaN float field": (frame(v=1, t="wait", retry_after_s=NAN, reason=""), REPLY_TYPES,
                        ErrorCode.NON_FINITE, "retry_after_s", None),
    "inf float field": (frame(v=1, t="wait", retry_after_s=INF, reason=""), REPLY_TYPES,
                        ErrorCode.NON_FINITE, "retry_after_s", None),
    "inf nested float": (frame(**good_curate_map(task_overrides={"client_timeout_s": INF})),
                         REQUEST_TYPES, ErrorCode.NON_FINITE, "task.client_timeout_s", None),
    "task refused by its own validation": (
        frame(**good_curate_map(task_overrides={"n_features": 0})), REQUEST_TYPES,
        ErrorCode.INVALID_TASK, "task", "n_features"),
    "defences refused by their validation": (
        frame(**good_curate_map(defences_overrides={"update_bits": 40, "max_bits": 8})),
        REQUEST_TYPES, ErrorCode.INVALID_TASK, "task.defences", None),
    "dict value bool": (frame(v=1, t="progress", version=1, updates_accepted=1,
                              updates_rejected={"roni": True}, validation_error=0.1,
                              active_clients=1, penalties=0, evictions=0, elapsed_s=1.0,
                              done=False, stop_reason=""), REPLY_TYPES, ErrorCode.BAD_FIELD,
                        "updates_rejected['roni']", "expected int, got bool"),
}


@pytest.mark.parametrize("name", list(MALFORMED_CASES))
def test_malformed_variants_give_the_right_code(name):
    data, accept, code, path, fragment = MALFORMED_CASES[name]
    err = wire_error(data, accept)
    assert err.code is code, (err.code, str(err))
    assert err.path == path
    if fragment is not None:
        assert fragment in err.message
    assert isinstance(err, ProtocolError)
    reply = err.reply()
    assert reply.code == code.value and reply.message == err.message


def test_dict_entry_limit_inside_a_field():
    m = {"v": 1, "t": "progress", "version": 1, "updates_accepted": 1,
         "updates_rejected": {str(i): i for i in range(MAX_DICT_ENTRIES + 1)},
         "validation_error": 0.1, "active_clients": 1, "penalties": 0, "evictions": 0,
         "elapsed_s": 1.0, "done": False, "stop_reason": ""}
    err = wire_error(frame(**m), REPLY_TYPES)
    assert err.code is ErrorCode.BAD_FIELD and err.path == "updates_rejected"
    # Far beyond the limit, msgpack itself refuses to build the map.
    m["updates_rejected"] = {str(i): i for i in range(10 * MAX_DICT_ENTRIES)}
    assert wire_error(frame(**m), REPLY_TYPES).code is ErrorCode.MALFORMED


def test_oversized_is_checked_before_unpacking():
    good = frame(**good_update_map())
    assert wire_error(good, max_bytes=len(good) - 1).code is ErrorCode.OVERSIZED
    assert decode(good, max_bytes=len(good)).nonce == 7
    # Garbage over the limit is OVERSIZED, not MALFORMED: the size check comes first.
    assert wire_error(b"\xc1" * 100, max_bytes=99).code is ErrorCode.OVERSIZED


def test_every_truncation_of_a_frame_is_malformed():
    good = encode(P.Curate(task=P.TaskSpec(n_features=3), validation_x=np.ones((2, 3)),
                           validation_y=np.ones(2)))
    for cut in range(len(good)):
        assert wire_error(good[:cut]).code is ErrorCode.MALFORMED, cut


def test_split_frame_joined_again_decodes():
    good = encode(P.Update(model_id="m", token=b"t", base=b"b", nonce=1, delta=np.ones(24)))
    head, tail = good[:17], good[17:]
    assert wire_error(head).code is ErrorCode.MALFORMED
    assert decode(head + tail, max_bytes=MAX).nonce == 1


def test_errors_never_echo_tokens_or_vectors():
    secret_token = b"TOP-SECRET-TOKEN-0123456789abcdef"
    cases = [
        good_update_map(token=secret_token, nonce=-5),
        good_update_map(token=secret_token, delta=b"\x00" * 9),
        good_update_map(token=secret_token, extra=secret_token),
        good_update_map(token=secret_token, model_id=7),
    ]
    for m in cases:
        err = wire_error(frame(**m))
        assert b"TOP-SECRET" not in str(err).encode()
        assert "TOP-SECRET" not in repr(err)


def test_wire_error_message_format():
    err = wire_error(frame(**good_curate_map(defences_overrides={"max_bits": "x"})))
    assert str(err) == "bad_field: task.defences.max_bits: expected int, got str"


# --------------------------------------------------------------------------- encode side


def _update(**overrides):
    fields = {"model_id": "m", "token": b"t", "base": b"b", "nonce": 1, "delta": np.ones(3)}
    fields.update(overrides)
    return P.Update(**fields)


@pytest.mark.parametrize("bad, error", [
    (_update(nonce="1"), TypeError),
    (_update(nonce=True), TypeError),
    (_update(nonce=-1), ValueError),
    (_update(nonce=2**64), ValueError),
    (_update(delta=[1.0, 2.0]), TypeError),
    (_update(delta=np.ones((2, 2))), ValueError),
    (_update(delta=np.array([1, 2])), TypeError),
    (_update(delta=np.array([1.0, NAN])), ValueError),
    (_update(delta=np.array([INF])), ValueError),
    (_update(token="t"), TypeError),
    (_update(token=b"x" * (MAX_BIN_BYTES + 1)), ValueError),
    (_update(model_id=b"m"), TypeError),
    (P.Wait(retry_after_s=NAN, reason=""), ValueError),
    (P.Wait(retry_after_s=True, reason=""), TypeError),
    (P.Curate(task="task", validation_x=np.ones((1, 1)), validation_y=np.ones(1)), TypeError),
    (P.Curate(task=P.TaskSpec(n_features=1), validation_x=np.ones(3), validation_y=np.ones(1)),
     ValueError),
])
def test_encoding_a_bad_message_is_our_bug_not_a_wire_error(bad, error):
    with pytest.raises(error) as info:
        encode(bad)
    assert not isinstance(info.value, WireError)


def test_encode_refuses_non_messages():
    with pytest.raises(TypeError, match="not a protocol message"):
        encode({"v": 1, "t": "join"})
    with pytest.raises(TypeError):
        encode(P.TaskSpec(n_features=3))  # a nested map, not a message


def test_encode_accepts_numpy_scalars_and_other_float_dtypes():
    message = _update(nonce=np.uint64(2**64 - 1), delta=np.array([1.5, 2.5], dtype=np.float32))
    decoded = decode(encode(message), max_bytes=MAX)
    assert decoded.nonce == 2**64 - 1 and type(decoded.nonce) is int
    np.testing.assert_array_equal(decoded.delta, [1.5, 2.5])


def test_encode_non_contiguous_vector():
    base = np.arange(10.0)
    decoded = decode(encode(_update(delta=base[::2])), max_bytes=MAX)
    np.testing.assert_array_equal(decoded.delta, base[::2])


def test_encode_is_little_endian_float64():
    data = msgpack.unpackb(encode(_update(delta=np.array([1.0, -2.0], dtype=">f8"))))
    assert data["delta"] == np.array([1.0, -2.0], dtype="<f8").tobytes()
    assert list(data)[:2] == ["v", "t"] and data["v"] == P.PROTOCOL_VERSION


def test_decode_argument_errors_are_callers_bugs():
    good = frame(**good_update_map())
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError):
            decode(good, max_bytes=bad)
    with pytest.raises(TypeError):
        decode(good, accept=(dict,), max_bytes=MAX)
    with pytest.raises(TypeError):
        decode(good, accept=(), max_bytes=MAX)


def test_narrow_accept_set():
    good = frame(**good_update_map())
    assert decode(good, accept=[P.Update], max_bytes=MAX).nonce == 7
    err = wire_error(good, accept=(P.Join, P.Solve))
    assert err.code is ErrorCode.UNKNOWN_TYPE and "join, solve" in err.message


# --------------------------------------------------------------------------- fuzzing

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | text | blob,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)


def _decode_or_wire_error(data, accept):
    try:
        message = decode(data, accept=accept, max_bytes=MAX)
    except WireError as err:
        assert isinstance(err.code, ErrorCode)
        return None
    assert type(message) in accept
    return message


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes_only_wire_error_escapes(data):
    _decode_or_wire_error(data, REQUEST_TYPES)
    _decode_or_wire_error(data, REPLY_TYPES)


@settings(max_examples=300, deadline=None)
@given(value=msgpack_values)
def test_fuzz_random_msgpack_objects_only_wire_error_escapes(value):
    _decode_or_wire_error(msgpack.packb(value), REQUEST_TYPES)


FIELD_MAPS = {
    "update": good_update_map(),
    "curate": good_curate_map(),
}


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(sorted(FIELD_MAPS)), data=st.data(), junk=msgpack_values)
def test_fuzz_mutated_valid_frames_only_wire_error_escapes(kind, data, junk):
    m = FIELD_MAPS[kind]
    m = {**m, "task": {**m["task"], "defences": dict(m["task"]["defences"])}} \
        if kind == "curate" else dict(m)
    target = m
    key = data.draw(st.sampled_from(sorted(target)))
    while isinstance(target[key], dict) and data.draw(st.booleans()):
        target[key] = dict(target[key])
        target = target[key]
        key = data.draw(st.sampled_from(sorted(target)))
    target[key] = junk
    _decode_or_wire_error(frame(**m), REQUEST_TYPES)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fuzz_byte_flips_of_valid_frames(data):
    good = bytearray(encode(data.draw(MESSAGES[P.Update])))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(good) - 1))
        good[position] = data.draw(st.integers(0, 255))
    _decode_or_wire_error(bytes(good), REQUEST_TYPES)


# --------------------------------------------------------------------------- schema docs


def test_schema_markdown_lists_every_type_and_field():
    text_md = codec.schema_markdown()
    for cls in ALL_TYPES:
        assert f"### `{cls.TYPE}` ({cls.__name__})" in text_md
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text_md
    for cls in (P.TaskSpec, P.StoppingRule, P.Defences):
        assert f"### {cls.__name__}" in text_md
    # Meanings come from the dataclasses' Attributes sections.
    assert "Difficulty of the admission puzzle" in text_md


def test_markdown_command_line(capsys):
    assert codec.main(["--markdown"]) == 0
    assert "# Wire protocol v1" in capsys.readouterr().out
    done = subprocess.run([sys.executable, "-m", "tormentor.transport.codec", "--markdown"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "### `update` (Update)" in done.stdout


def test_readme_wire_schema_matches_the_code():
    """The README's protocol tables are generated; this fails when they go stale."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("update_readme", root / "scripts" / "update_readme.py")
    update_readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update_readme)
    readme = (root / "README.md").read_text(encoding="utf-8")
    start, end = update_readme.SCHEMA
    section = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert section == update_readme.schema_section(), "run `make readme` to regenerate the wire schema"
