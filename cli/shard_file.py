"""A client's data file: one CSV of preprocessed rows, the last column the label.

``tormentor-engine data shard`` writes it; ``tormentor-engine client --data`` reads it.
Layout::

    LIMIT_BAL,SEX,...,PAY_AMT6,bias,label        <- optional header line
    -0.9052,0.8101,...,-0.2931,1,-1              <- d feature values (bias included), label

Feature values are used as they are: the preprocessing (for the credit data, the
training rows' mean and standard deviation, then a bias column of ones) is agreed out
of band, so that every client's columns mean what the curator's validation set means.
Labels are ``+1``/``-1`` (``1``/``0`` is accepted and mapped to ``+1``/``-1``).

Only NumPy is imported: a headless client reads its data with this module.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["LABEL_COLUMN", "read_shard_csv", "write_shard_csv"]

#: Name of the label column in the header line.
LABEL_COLUMN = "label"


def write_shard_csv(path: str | os.PathLike[str], x: np.ndarray, y: np.ndarray,
                    feature_names: tuple[str, ...] | list[str] | None = None) -> Path:
    """Write rows ``x`` (n, d) and labels ``y`` (n,) in {-1, +1} as a client data file.

    Parameters
    ----------
    path : str or path-like
        File to create or replace.
    x : ndarray, shape (n, d)
        Preprocessed features (bias column included when the task has one); finite.
    y : ndarray, shape (n,)
        Labels in {-1, +1}.
    feature_names : sequence of str or None
        ``d`` column names for the header line (None: ``x0..x{d-1}``).

    Returns
    -------
    pathlib.Path
        The file written. Values are written with 17 significant digits (exact float64).

    Raises
    ------
    ValueError
        On mismatched shapes, non-finite values, labels outside {-1, +1} or a wrong
        number of names.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (n, d) with n >= 1 and y (n,), got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x must be finite")
    if not np.isin(y, (-1.0, 1.0)).all():
        raise ValueError("y must hold only -1 and +1")
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(x.shape[1])]
    if len(names) != x.shape[1] or any("," in name or "\n" in name for name in names):
        raise ValueError(f"feature_names must be {x.shape[1]} names without commas or newlines")
    path = Path(path)
    table = np.column_stack([x, y])
    np.savetxt(path, table, delimiter=",", fmt="%.17g", header=",".join([*names, LABEL_COLUMN]), comments="")
    return path


def _is_header(line: str) -> bool:
    for field in line.strip().split(","):
        try:
            float(field)
        except ValueError:
            return True
    return False


def read_shard_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a client data file.

    Parameters
    ----------
    path : str or path-like
        The CSV (see the module docstring).

    Returns
    -------
    (ndarray, ndarray)
        ``x`` (n, d) float64 C-contiguous and ``y`` (n,) in {-1.0, +1.0}.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    tormentor.engine.data.DataFormatError
        Not comma-separated numbers, fewer than 2 columns, no rows, a missing or
        non-finite value, or labels other than +1/-1 (or 1/0). The message names the
        file and what is wrong, never a value.
    """
    from tormentor.engine.data import DataFormatError

    path = Path(path)
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    if not first.strip():
        raise DataFormatError(f"{path.name}: empty file; expected CSV rows of features and a label")
    skip = 1 if _is_header(first) else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": reported below
            table = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2)
    except ValueError:
        raise DataFormatError(f"{path.name}: rows must be comma-separated numbers, all with the same "
                              "number of columns (features..., label)") from None
    if table.shape[0] == 0:
        raise DataFormatError(f"{path.name}: no data rows")
    if table.shape[1] < 2:
        raise DataFormatError(f"{path.name}: need at least 2 columns (features..., label), "
                              f"got {table.shape[1]}")
    if not np.isfinite(table).all():
        raise DataFormatError(f"{path.name}: missing or non-finite values")
    x = np.ascontiguousarray(table[:, :-1])
    labels = table[:, -1]
    if np.isin(labels, (-1.0, 1.0)).all():
        y = np.ascontiguousarray(labels)
    elif np.isin(labels, (0.0, 1.0)).all():
        y = np.ascontiguousarray(2.0 * labels - 1.0)
    else:
        raise DataFormatError(f"{path.name}: the last column (label) must hold only +1/-1 or 1/0")
    return x, y
