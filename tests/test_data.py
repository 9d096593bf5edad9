"""Tests for tormentor.engine.data: locating, reading, splitting and sharding the credit data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tormentor.engine.data import (
    BIAS_NAME,
    CSV_NAME,
    LABEL_NAME,
    CreditData,
    CreditTable,
    DataFormatError,
    DataMissingError,
    client_shards,
    default_data_dir,
    flip_labels,
    prepare_credit,
    read_credit_csv,
    resolve_data_path,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_csv() -> Path | None:
    """The shared copy of creditcard.csv: $TORMENTOR_DATA, else ../shared/data/credit."""
    folder = os.environ.get("TORMENTOR_DATA")
    base = Path(folder) if folder else REPO_ROOT.parent / "shared" / "data" / "credit"
    path = base / CSV_NAME
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def table() -> CreditTable:
    path = shared_csv()
    if path is None:
        pytest.skip("creditcard.csv not found: set TORMENTOR_DATA or run `tormentor-engine data fetch`")
    return read_credit_csv(path)


def small_table(n: int = 40, seed: int = 3) -> CreditTable:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 23)) * np.arange(1, 24)
    features[:, 5] = 7.0  # a constant column
    return CreditTable(
        features=features,
        labels=(rng.random(n) < 0.3).astype(np.float64),
        ids=np.arange(1, n + 1, dtype=np.int64),
        feature_names=tuple(f"F{i}" for i in range(23)),
    )


def write_csv(path: Path, header1: str, header2: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header1, header2, *rows]) + "\n", encoding="utf-8")
    return path


HEADER1 = "," + ",".join(f"X{i}" for i in range(1, 24)) + ",Y"
HEADER2 = "ID," + ",".join(f"F{i}" for i in range(23)) + "," + LABEL_NAME


# --------------------------------------------------------------------- resolve_data_path
def test_resolve_configured_file_and_folder(tmp_path: Path) -> None:
    csv = tmp_path / CSV_NAME
    csv.write_text("x", encoding="utf-8")
    env = {"TORMENTOR_DATA": "/nonexistent", "XDG_CACHE_HOME": "/nonexistent"}
    assert resolve_data_path(str(csv), environ=env) == csv
    assert resolve_data_path(tmp_path, environ=env) == csv


def test_resolve_configured_missing_does_not_fall_back(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / CSV_NAME).write_text("x", encoding="utf-8")
    with pytest.raises(DataMissingError) as info:
        resolve_data_path(tmp_path / "elsewhere", environ={"TORMENTOR_DATA": str(good)})
    assert info.value.path == tmp_path / "elsewhere"


def test_resolve_env_then_cache(tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / CSV_NAME).write_text("x", encoding="utf-8")
    assert resolve_data_path(None, environ={"TORMENTOR_DATA": str(env_dir)}) == env_dir / CSV_NAME

    cache = tmp_path / "cache"
    target = cache / "tormentor-engine" / "data" / "credit" / CSV_NAME
    target.parent.mkdir(parents=True)
    target.write_text("x", encoding="utf-8")
    env = {"XDG_CACHE_HOME": str(cache)}
    assert default_data_dir(env) == target.parent
    assert resolve_data_path(None, environ=env) == target
    assert resolve_data_path("", environ=env) == target


def test_missing_data_message_says_how_to_supply(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    with pytest.raises(DataMissingError) as info:
        resolve_data_path(None, environ=env)
    message = str(info.value)
    assert "tormentor-engine data fetch" in message
    assert "TORMENTOR_DATA" in message
    assert str(tmp_path / "tormentor-engine" / "data" / "credit" / CSV_NAME) in message
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DataMissingError):
        resolve_data_path(None, environ={"TORMENTOR_DATA": str(tmp_path)})


def test_resolve_rejects_bad_type() -> None:
    with pytest.raises(TypeError, match="configured"):
        resolve_data_path(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- read_credit_csv
def test_read_small_csv(tmp_path: Path) -> None:
    row = ",".join(["7"] + [str(i) for i in range(23)] + ["1"])
    row0 = ",".join(["8"] + ["0"] * 23 + ["0"])
    table = read_credit_csv(write_csv(tmp_path / "a.csv", HEADER1, HEADER2, [row, row0]))
    assert table.features.shape == (2, 23)
    assert table.features[0, 22] == 22.0
    np.testing.assert_array_equal(table.labels, [1.0, 0.0])
    np.testing.assert_array_equal(table.ids, [7, 8])
    assert table.feature_names == tuple(f"F{i}" for i in range(23))


@pytest.mark.parametrize(
    ("header1", "header2", "rows", "match"),
    [
        ("ID,X1", HEADER2, [], "first header"),
        (HEADER1, HEADER2.replace(LABEL_NAME, "Y"), [], "second header"),
        (HEADER1, HEADER2, [",".join(["1"] * 24)], "numbers|columns"),
        (HEADER1, HEADER2, [",".join(["1"] * 24 + ["2"])], "label"),
        (HEADER1, HEADER2, [",".join(["1"] * 23 + ["nan", "1"])], "non-finite"),
        (HEADER1, HEADER2, [",".join(["1"] * 23 + ["abc", "1"])], "numbers"),
    ],
)
def test_read_rejects_malformed(
    tmp_path: Path, header1: str, header2: str, rows: list[str], match: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", header1, header2, rows)
    with pytest.raises(DataFormatError, match=match):
        read_credit_csv(path)


def test_real_file_layout(table: CreditTable) -> None:
    assert table.features.shape == (30_000, 23)
    assert table.feature_names[0] == "LIMIT_BAL"
    assert table.feature_names[-1] == "PAY_AMT6"
    assert LABEL_NAME not in table.feature_names
    assert abs(table.labels.mean() - 0.2212) < 5e-4
    np.testing.assert_array_equal(table.ids, np.arange(1, 30_001))


# ----------------------------------------------------------------------- prepare_credit
def test_split_sizes_types_and_bias(table: CreditTable) -> None:
    data = prepare_credit(table, seed=0)
    assert isinstance(data, CreditData)
    assert data.X_train.shape == (21_000, 24)
    assert data.X_test.shape == (9_000, 24)
    assert data.y_train.shape == (21_000,)
    assert data.y_test.shape == (9_000,)
    for array in (data.X_train, data.y_train, data.X_test, data.y_test):
        assert array.dtype == np.float64
        assert array.flags.c_contiguous
    assert data.n_weights == 24
    assert len(data.feature_names) == 24
    assert data.feature_names[-1] == BIAS_NAME
    assert LABEL_NAME not in data.feature_names
    np.testing.assert_array_equal(data.X_train[:, -1], 1.0)
    np.testing.assert_array_equal(data.X_test[:, -1], 1.0)
    assert set(np.unique(data.y_train)) == {-1.0, 1.0}
    # the split is a partition of the rows
    rows = np.concatenate([data.train_index, data.test_index])
    np.testing.assert_array_equal(np.sort(rows), np.arange(30_000))
    # labels map 1 -> +1 row by row
    np.testing.assert_array_equal(data.y_test, 2.0 * table.labels[data.test_index] - 1.0)


def test_label_is_not_a_feature(table: CreditTable) -> None:
    data = prepare_credit(table, seed=1)
    features = data.X_train[:, :-1]
    correlations = [abs(np.corrcoef(features[:, j], data.y_train)[0, 1]) for j in range(23)]
    assert max(correlations) < 0.5
    for j in range(23):
        assert not np.array_equal(np.sign(features[:, j]), data.y_train)


def test_standardised_with_training_statistics_only(table: CreditTable) -> None:
    data = prepare_credit(table, seed=2)
    train_raw = table.features[data.train_index]
    np.testing.assert_allclose(data.mean, train_raw.mean(axis=0))
    np.testing.assert_allclose(data.std, train_raw.std(axis=0))
    np.testing.assert_allclose(data.X_train[:, :-1].mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(data.X_train[:, :-1].std(axis=0), 1.0, atol=1e-9)
    test_means = data.X_test[:, :-1].mean(axis=0)
    assert np.all(np.abs(test_means) > 1e-6)  # test rows use the train statistics
    np.testing.assert_allclose(data.transform(table.features[data.test_index]), data.X_test)
    np.testing.assert_allclose(data.transform(table.features[data.train_index[0]]), data.X_train[0])


def test_permutation_is_seeded(table: CreditTable) -> None:
    first = prepare_credit(table, seed=5)
    again = prepare_credit(table, seed=5)
    other = prepare_credit(table, seed=6)
    np.testing.assert_array_equal(first.train_index, again.train_index)
    np.testing.assert_array_equal(first.X_train, again.X_train)
    assert not np.array_equal(first.train_index, other.train_index)
    unseeded = prepare_credit(table)
    assert not np.array_equal(unseeded.train_index, first.train_index)
    assert unseeded.seed.bit_length() > 64  # drawn full width from the OS ...
    replayed = prepare_credit(table, seed=unseeded.seed)  # ... and recorded to reproduce
    np.testing.assert_array_equal(replayed.train_index, unseeded.train_index)


def test_zero_std_column_and_clip() -> None:
    table = small_table()
    before = table.features.copy()
    data = prepare_credit(table, seed=0, train_fraction=0.5)
    np.testing.assert_array_equal(table.features, before)  # input not mutated
    assert data.std[5] == 1.0
    np.testing.assert_array_equal(data.X_train[:, 5], 0.0)
    assert np.all(np.isfinite(data.X_test))
    clipped = prepare_credit(table, seed=0, train_fraction=0.5, clip=0.5)
    assert np.abs(clipped.X_train[:, :-1]).max() <= 0.5
    np.testing.assert_array_equal(clipped.X_train[:, -1], 1.0)
    assert clipped.clip == 0.5


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"train_fraction": 0.0}, ValueError),
        ({"train_fraction": 1.0}, ValueError),
        ({"train_fraction": 0.001}, ValueError),
        ({"clip": 0.0}, ValueError),
        ({"clip": float("inf")}, ValueError),
    ],
)
def test_prepare_rejects_bad_parameters(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        prepare_credit(small_table(), seed=0, **kwargs)


def test_prepare_rejects_non_table() -> None:
    with pytest.raises(TypeError, match="table"):
        prepare_credit(np.zeros((3, 3)))  # type: ignore[arg-type]


# ------------------------------------------------------------------------ client_shards
def xy(n: int = 101, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    X = np.ascontiguousarray(rng.normal(size=(n, d)))
    X[:, 0] = np.arange(n)  # row id, to track rows
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    return X, y


def test_disjoint_shards_partition_the_rows() -> None:
    X, y = xy()
    X0, y0 = X.copy(), y.copy()
    shards = client_shards(X, y, n_clients=7, mode="disjoint", seed=4)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    sizes = [len(part_y) for _, part_y in shards]
    assert sum(sizes) == 101 and max(sizes) - min(sizes) <= 1
    ids = np.concatenate([part_X[:, 0] for part_X, _ in shards])
    np.testing.assert_array_equal(np.sort(ids), np.arange(101))
    for part_X, part_y in shards:
        assert part_X.flags.c_contiguous and part_X.dtype == np.float64
        np.testing.assert_array_equal(part_y, y[part_X[:, 0].astype(int)])
    again = client_shards(X, y, n_clients=7, mode="disjoint", seed=4)
    other = client_shards(X, y, n_clients=7, mode="disjoint", seed=5)
    np.testing.assert_array_equal(shards[0][0], again[0][0])
    assert not np.array_equal(shards[0][0], other[0][0])


def test_bootstrap_shards_resample_with_replacement() -> None:
    X, y = xy(n=200)
    shards = client_shards(X, y, n_clients=3, mode="bootstrap", seed=9)
    assert [len(part_y) for _, part_y in shards] == [200, 200, 200]
    for part_X, part_y in shards:
        ids = part_X[:, 0].astype(int)
        assert len(np.unique(ids)) < 200  # duplicates: drawn with replacement
        np.testing.assert_array_equal(part_y, y[ids])
    assert not np.array_equal(shards[0][0], shards[1][0])  # independent per client
    sized = client_shards(X, y, n_clients=2, mode="bootstrap", size=50, seed=9)
    assert [len(part_y) for _, part_y in sized] == [50, 50]
    again = client_shards(X, y, n_clients=3, mode="bootstrap", seed=9)
    np.testing.assert_array_equal(shards[2][0], again[2][0])


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n_clients": 0}, ValueError),
        ({"n_clients": 200}, ValueError),
        ({"n_clients": 2.0}, TypeError),
        ({"n_clients": 2, "mode": "iid"}, ValueError),
        ({"n_clients": 2, "size": 10}, ValueError),
        ({"n_clients": 2, "mode": "bootstrap", "size": 0}, ValueError),
    ],
)
def test_client_shards_validation(kwargs: dict, error: type) -> None:
    X, y = xy()
    with pytest.raises(error):
        client_shards(X, y, **kwargs)


def test_client_shards_shape_mismatch() -> None:
    X, y = xy()
    with pytest.raises(ValueError, match="y must"):
        client_shards(X, y[:-1], n_clients=2)


def test_flip_labels_is_pure() -> None:
    X, y = xy()
    X0, y0 = X.copy(), y.copy()
    flipped_X, flipped_y = flip_labels(X, y)
    np.testing.assert_array_equal(flipped_y, -y0)
    np.testing.assert_array_equal(flipped_X, X0)
    assert not np.shares_memory(flipped_X, X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        flip_labels(X, np.zeros_like(y))
