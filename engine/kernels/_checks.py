"""Input checks shared by the kernel families' references (and so by their Numba wrappers)."""

from __future__ import annotations

import numpy as np

__all__ = ["validate_array"]


def validate_array(name: str, a: object, ndim: int, *, contiguous: bool = True) -> np.ndarray:
    """Check that ``a`` is a float64 array with ``ndim`` dimensions, C-contiguous if asked.

    Parameters
    ----------
    name : str
        The argument's name, for the error message.
    a : object
        The value to check.
    ndim : int
        Required number of dimensions.
    contiguous : bool
        Require C order (the Numba kernels' explicit signatures do; RONI copies its
        inputs and takes any layout).

    Returns
    -------
    numpy.ndarray
        ``a`` itself.

    Raises
    ------
    TypeError
        If ``a`` is not a :class:`numpy.ndarray` of dtype float64.
    ValueError
        If it has the wrong number of dimensions, or is not C-contiguous when required.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.float64:
        raise TypeError(f"{name} must have dtype float64, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if contiguous and not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    return a
