"""Adversarial clients, kept apart from honest code (paper section 4 threat model).

- :class:`LabelFlippingPoisoner`: trains on its shard with every label negated
  (paper 7.5); otherwise an ordinary client that solves its puzzles.
- :class:`InversionAttacker`: reconstructs a victim's model from the changes of the
  global model around its own updates (paper 5.4, Figure 4).
- :func:`admit_sybils`: one party admitting many identities, paying every admission
  puzzle (paper 4, sybil attacks).
"""

from .inversion import InversionAttacker, reconstruction_error
from .poisoner import LabelFlippingPoisoner
from .sybil import SybilReport, admit_sybils

__all__ = [
    "InversionAttacker",
    "LabelFlippingPoisoner",
    "SybilReport",
    "admit_sybils",
    "reconstruction_error",
]
