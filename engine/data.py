"""The UCI credit-card default data: locate, read, split, standardise and shard.

This is the data set of the paper's evaluation (section 7.1): 30,000 customers, 23 raw
features and a binary label "default payment next month" (I-Cheng Yeh and Che-hui Lien,
2009; UCI, CC BY 4.0). The pipeline follows the paper without the original prototype's
label leak:

1. read the CSV (two header lines, an ``ID`` column, 23 features ``X1..X23``, label ``Y``);
   the ``ID`` and the label are never features;
2. permute the rows with a seeded generator and split 70 % train / 30 % test
   (21,000 / 9,000 rows);
3. standardise the 23 features with the **training rows'** mean and standard deviation
   (a zero standard deviation is replaced by 1, so a constant column becomes 0);
4. append a bias column of ones as the **last** column, index 23 (``d = 24`` weights:
   ``w[:23]`` are the feature weights in CSV order, ``w[23]`` is the intercept);
5. map the label to ``{-1, +1}`` (1 = default -> +1).

Heavy tails
-----------
After scaling, the payment-amount columns (``PAY_AMT1..6``) reach 50-77 standard
deviations and a few rows have a norm near 100 (median row norm 3.6). Clipping the
standardised values at +-5 or +-10 changes the centralised logistic-regression error by
less than 0.1 percentage point (measured over 5 splits), so by default nothing is clipped
(``clip=None``), which is the paper's plain normalisation. The DP client must still bound
each example's influence (per-example gradient clipping): see
``docs/privacy-facts.md``. ``clip`` is offered for experiments that want bounded rows.

Where the file comes from
-------------------------
:func:`resolve_data_path` looks, in order, at the configured path, at ``$TORMENTOR_DATA``
and at the user cache folder where ``tormentor-engine data fetch`` downloads it
(:func:`default_data_dir`). The repository never holds a copy of the CSV.

>>> import numpy as np
>>> X = np.arange(12.0).reshape(6, 2); y = np.array([1.0, -1, 1, -1, 1, -1])
>>> [len(part_y) for _, part_y in client_shards(X, y, n_clients=3, mode="disjoint", seed=0)]
[2, 2, 2]
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BIAS_NAME",
    "CSV_NAME",
    "LABEL_NAME",
    "CreditData",
    "CreditTable",
    "DataFormatError",
    "DataMissingError",
    "N_FEATURES",
    "client_shards",
    "default_data_dir",
    "flip_labels",
    "load_credit",
    "prepare_credit",
    "read_credit_csv",
    "resolve_data_path",
]

#: File name of the data set inside a data folder.
CSV_NAME = "creditcard.csv"
#: Number of raw features (``X1..X23``); the model has ``N_FEATURES + 1`` weights.
N_FEATURES = 23
#: Name of the label column in the CSV's second header line.
LABEL_NAME = "default payment next month"
#: Name given to the appended column of ones.
BIAS_NAME = "bias"

_SHARD_MODES = ("disjoint", "bootstrap")


class DataMissingError(FileNotFoundError):
    """The credit-card CSV is not where it was looked for.

    Attributes
    ----------
    path : pathlib.Path
        The file that was looked for.
    """

    def __init__(self, path: Path, origin: str) -> None:
        self.path = Path(path)
        super().__init__(
            f"credit-card data not found at {self.path} ({origin}). Supply it with "
            f"`tormentor-engine data fetch` (downloads it to {default_data_dir()}), or set "
            f"TORMENTOR_DATA to a folder containing {CSV_NAME}, or point the config's "
            f"data.path at the file or its folder."
        )


class DataFormatError(ValueError):
    """The CSV does not have the layout of the UCI credit-card default data."""


@dataclass(frozen=True)
class CreditTable:
    """The raw CSV content, before any preprocessing.

    Attributes
    ----------
    features : numpy.ndarray
        Raw feature values, shape ``(n, 23)``, float64, columns in CSV order.
    labels : numpy.ndarray
        ``1.0`` = default next month, ``0.0`` = no default, shape ``(n,)``, float64.
    ids : numpy.ndarray
        The CSV's ``ID`` column, shape ``(n,)``, int64 (never a feature).
    feature_names : tuple of str
        The 23 names from the second header line (``LIMIT_BAL`` ... ``PAY_AMT6``).
    """

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    feature_names: tuple[str, ...]


@dataclass(frozen=True)
class CreditData:
    """A prepared train/test split, ready for logistic regression.

    The arrays are float64 and C-contiguous. They are not marked read-only (Numba
    kernels with explicit signatures reject read-only arrays), but treat them as such:
    functions in this module never modify them.

    Attributes
    ----------
    X_train, X_test : numpy.ndarray
        Standardised features plus the bias column, shapes ``(n_train, 24)`` and
        ``(n_test, 24)``; column 23 is the bias (all ones).
    y_train, y_test : numpy.ndarray
        Labels in ``{-1.0, +1.0}`` (+1 = default), shapes ``(n_train,)``, ``(n_test,)``.
    feature_names : tuple of str
        24 names, the 23 CSV names followed by ``"bias"``.
    mean, std : numpy.ndarray
        The training rows' per-feature mean and the standard deviation used for scaling
        (zero replaced by one), shape ``(23,)``: a raw row ``r`` maps to
        ``concat((r - mean) / std, [1])`` (then clipped, see ``clip``).
    clip : float or None
        Bound applied to the standardised values (``None``: no clipping).
    seed : int
        The seed of the permutation (drawn from the OS when none was given; passing it
        back to :func:`prepare_credit` reproduces the split).
    train_index, test_index : numpy.ndarray
        Rows of the CSV (0-based, int64) that make up the train and test shards.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    clip: float | None
    seed: int
    train_index: np.ndarray
    test_index: np.ndarray

    @property
    def n_weights(self) -> int:
        """Number of model weights ``d`` (features plus bias), 24 for this data."""
        return int(self.X_train.shape[1])

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Apply this split's preprocessing to raw feature rows.

        Parameters
        ----------
        raw : numpy.ndarray
            Raw features, shape ``(m, 23)`` (or ``(23,)`` for one row), CSV order.

        Returns
        -------
        numpy.ndarray
            Shape ``(m, 24)`` (or ``(24,)``), float64, C-contiguous, bias last.
        """
        return _standardise(np.asarray(raw, dtype=np.float64), self.mean, self.std, self.clip)


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the user cache folder where ``data fetch`` stores the CSV.

    ``$XDG_CACHE_HOME/tormentor-engine/data/credit``, with ``~/.cache`` when
    ``XDG_CACHE_HOME`` is unset or empty.

    Parameters
    ----------
    environ : mapping, optional
        Environment to read (default ``os.environ``); injectable for tests.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tormentor-engine" / "data" / "credit"


def resolve_data_path(
    configured: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None
) -> Path:
    """Find ``creditcard.csv``.

    Looks, in order, at

    1. ``configured`` (the config's ``data.path``): the file itself or a folder holding
       ``creditcard.csv``;
    2. ``$TORMENTOR_DATA``: a folder holding ``creditcard.csv``;
    3. :func:`default_data_dir`, where ``tormentor-engine data fetch`` puts it.

    The first source that is given decides: a configured path that does not hold the
    file is an error, not a reason to look elsewhere.

    Parameters
    ----------
    configured : str or path-like or None
        The configured location, or ``None``/``""`` when the config names none.
    environ : mapping, optional
        Environment to read (default ``os.environ``); injectable for tests.

    Returns
    -------
    pathlib.Path
        Path of an existing file.

    Raises
    ------
    DataMissingError
        If the file is not at the chosen location; the message says how to supply it.
    TypeError
        If ``configured`` is not a string, a path or ``None``.
    """
    env = os.environ if environ is None else environ
    if configured is not None and not isinstance(configured, (str, os.PathLike)):
        raise TypeError(f"configured must be a path or None, got {type(configured).__name__}")
    if configured is not None and os.fspath(configured) != "":
        path = Path(configured).expanduser()
        if path.is_dir():
            path = path / CSV_NAME
        origin = "configured data.path"
    elif env.get("TORMENTOR_DATA"):
        path = Path(env["TORMENTOR_DATA"]).expanduser() / CSV_NAME
        origin = "from $TORMENTOR_DATA"
    else:
        path = default_data_dir(env) / CSV_NAME
        origin = "default cache folder"
    if not path.is_file():
        raise DataMissingError(path, origin)
    return path


def read_credit_csv(path: str | os.PathLike[str]) -> CreditTable:
    """Read the credit-card CSV and check its layout.

    Parameters
    ----------
    path : str or path-like
        The ``creditcard.csv`` file (layout: ``,X1..X23,Y`` then
        ``ID,LIMIT_BAL,...,default payment next month``, then one row per customer).

    Returns
    -------
    CreditTable
        Raw features, 0/1 labels, ids and the 23 feature names.

    Raises
    ------
    DataFormatError
        If the header lines, the column count or the labels are not as expected, or a
        value is missing or not finite.
    """
    path = Path(path)
    with path.open("r", encoding="utf-8", newline="") as handle:
        first = handle.readline().strip().split(",")
        second = handle.readline().strip().split(",")
    expected_first = ["", *(f"X{i}" for i in range(1, N_FEATURES + 1)), "Y"]
    if first != expected_first:
        raise DataFormatError(f"{path.name}: first header line must be ',X1,...,X23,Y'")
    if len(second) != N_FEATURES + 2 or second[0] != "ID" or second[-1] != LABEL_NAME:
        raise DataFormatError(
            f"{path.name}: second header line must be 'ID,<23 feature names>,{LABEL_NAME}'"
        )
    try:
        values = np.loadtxt(path, delimiter=",", skiprows=2, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataFormatError(f"{path.name}: data rows are not {N_FEATURES + 2} numbers") from exc
    if values.shape[1] != N_FEATURES + 2 or values.shape[0] == 0:
        raise DataFormatError(
            f"{path.name}: expected rows of {N_FEATURES + 2} columns, got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise DataFormatError(f"{path.name}: missing or non-finite values")
    labels = values[:, -1]
    if not np.all((labels == 0.0) | (labels == 1.0)):
        raise DataFormatError(f"{path.name}: label column must hold only 0 and 1")
    return CreditTable(
        features=np.ascontiguousarray(values[:, 1 : N_FEATURES + 1]),
        labels=np.ascontiguousarray(labels),
        ids=values[:, 0].astype(np.int64),
        feature_names=tuple(second[1 : N_FEATURES + 1]),
    )


def _standardise(
    raw: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float | None
) -> np.ndarray:
    """Scale raw rows with the given statistics, clip, append the bias column."""
    if raw.shape[-1] != mean.shape[0]:
        raise ValueError(f"raw must have {mean.shape[0]} columns, got shape {raw.shape}")
    scaled = (raw - mean) / std
    if clip is not None:
        scaled = np.clip(scaled, -clip, clip)
    ones = np.ones(scaled.shape[:-1] + (1,), dtype=np.float64)
    return np.ascontiguousarray(np.concatenate([scaled, ones], axis=-1), dtype=np.float64)


def prepare_credit(
    table: CreditTable,
    *,
    seed: int | None = None,
    train_fraction: float = 0.7,
    clip: float | None = None,
) -> CreditData:
    """Permute, split and standardise (section 7.1 of the paper, without the label leak).

    Parameters
    ----------
    table : CreditTable
        The raw data (:func:`read_credit_csv`); not modified.
    seed : int or None
        Seed of the permutation; ``None`` draws a 128-bit one from the OS (kept in
        :attr:`CreditData.seed`).
    train_fraction : float
        Share of rows in the training shard, in ``(0, 1)``; the training shard gets
        ``round(n * train_fraction)`` rows (21,000 of 30,000 at 0.7).
    clip : float or None
        If given (> 0), standardised values are clipped to ``[-clip, clip]``.

    Returns
    -------
    CreditData
        The split, with the training statistics.

    Raises
    ------
    TypeError
        If ``table`` is not a :class:`CreditTable`.
    ValueError
        If ``train_fraction`` or ``clip`` is out of range, or a shard would be empty.
    """
    if not isinstance(table, CreditTable):
        raise TypeError(f"table must be a CreditTable, got {type(table).__name__}")
    if not (isinstance(train_fraction, (int, float)) and 0.0 < train_fraction < 1.0):
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0 and np.isfinite(clip)):
        raise ValueError(f"clip must be a positive finite number or None, got {clip!r}")
    n = table.labels.shape[0]
    n_train = int(round(n * train_fraction))
    if not 0 < n_train < n:
        raise ValueError(f"train_fraction={train_fraction} leaves an empty shard for {n} rows")
    if seed is None:
        seed = secrets.randbits(128)  # full width from the OS, recorded to reproduce
    order = np.random.default_rng(seed).permutation(n)
    train_index, test_index = order[:n_train], order[n_train:]
    train_raw = table.features[train_index]
    mean = train_raw.mean(axis=0)
    std = train_raw.std(axis=0)
    std = np.where(std > 0.0, std, 1.0)
    labels = 2.0 * table.labels - 1.0
    return CreditData(
        X_train=_standardise(train_raw, mean, std, clip),
        y_train=np.ascontiguousarray(labels[train_index]),
        X_test=_standardise(table.features[test_index], mean, std, clip),
        y_test=np.ascontiguousarray(labels[test_index]),
        feature_names=(*table.feature_names, BIAS_NAME),
        mean=mean,
        std=std,
        clip=None if clip is None else float(clip),
        seed=int(seed),
        train_index=train_index.astype(np.int64),
        test_index=test_index.astype(np.int64),
    )


def load_credit(
    path: str | os.PathLike[str] | None = None,
    *,
    seed: int | None = None,
    train_fraction: float = 0.7,
    clip: float | None = None,
) -> CreditData:
    """Locate, read and prepare the credit-card data in one call.

    Parameters
    ----------
    path : str or path-like or None
        As ``configured`` in :func:`resolve_data_path`.
    seed, train_fraction, clip
        As in :func:`prepare_credit`.

    Raises
    ------
    DataMissingError
        If the CSV cannot be found.
    DataFormatError
        If it is not the credit-card CSV.
    """
    return prepare_credit(
        read_credit_csv(resolve_data_path(path)),
        seed=seed,
        train_fraction=train_fraction,
        clip=clip,
    )


def _check_xy(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got shape {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must be 1-D with {X.shape[0]} entries, got shape {y.shape}")
    return X, y


def client_shards(
    X: np.ndarray,
    y: np.ndarray,
    n_clients: int,
    mode: str = "disjoint",
    size: int | None = None,
    seed: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Give each client its own shard of a (training) set.

    Parameters
    ----------
    X : numpy.ndarray
        Rows, shape ``(n, d)``; not modified.
    y : numpy.ndarray
        Labels, shape ``(n,)``; not modified.
    n_clients : int
        Number of shards, >= 1.
    mode : {"disjoint", "bootstrap"}
        ``"disjoint"``: an even split of one random permutation (shard sizes differ by
        at most one; every row lands in exactly one shard; section 7.4).
        ``"bootstrap"``: each client independently resamples ``size`` rows with
        replacement (section 7.3: ``n = 21,000`` rows per client).
    size : int or None
        Rows per bootstrap shard (default ``n``). Not allowed in ``"disjoint"`` mode.
    seed : int or None
        Seed of the permutation / resampling; ``None`` draws one from the OS.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        ``n_clients`` pairs ``(X_i, y_i)``: new C-contiguous arrays of X's and y's dtypes.

    Raises
    ------
    ValueError
        On a bad ``mode``, ``n_clients`` or ``size``, or mismatched shapes.
    """
    X, y = _check_xy(X, y)
    n = X.shape[0]
    if isinstance(n_clients, bool) or not isinstance(n_clients, (int, np.integer)):
        raise TypeError(f"n_clients must be an int, got {type(n_clients).__name__}")
    if mode not in _SHARD_MODES:
        raise ValueError(f"mode must be one of {_SHARD_MODES}, got {mode!r}")
    if n_clients < 1:
        raise ValueError(f"n_clients must be >= 1, got {n_clients}")
    rng = np.random.default_rng(seed)
    if mode == "disjoint":
        if size is not None:
            raise ValueError("size is only used in mode='bootstrap'")
        if n_clients > n:
            raise ValueError(f"n_clients={n_clients} exceeds the {n} rows available")
        parts = np.array_split(rng.permutation(n), n_clients)
    else:
        rows = n if size is None else size
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if n == 0:
            raise ValueError("cannot bootstrap from an empty set")
        parts = [rng.integers(0, n, size=int(rows)) for _ in range(n_clients)]
    return [(np.ascontiguousarray(X[idx]), np.ascontiguousarray(y[idx])) for idx in parts]


def flip_labels(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return a copy of a shard with every label negated (``y -> -y``).

    The inversion experiment (section 7.4) gives the victim a label-flipped shard so its
    model is far from the global one; label-flipping poisoners use the same shard.

    Parameters
    ----------
    X : numpy.ndarray
        Rows, shape ``(n, d)``; copied, not modified.
    y : numpy.ndarray
        Labels in ``{-1, +1}``, shape ``(n,)``; not modified.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        New arrays ``(X.copy(), -y)``.

    Raises
    ------
    ValueError
        If the shapes do not match or ``y`` holds values other than -1 and +1.
    """
    X, y = _check_xy(X, y)
    if not np.all((y == 1) | (y == -1)):
        raise ValueError("y must hold only -1 and +1")
    return np.array(X, order="C", copy=True), np.ascontiguousarray(-y)
