"""The example's data: one synthetic classification problem, split into training rows (the
models) and users (the load script), so both sides agree without sharing files."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_classification

N_TRAIN = 3000


def problem(n_users: int = 20_000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: the first :data:`N_TRAIN` rows train the models, the rest are users."""
    x, y = make_classification(n_samples=N_TRAIN + n_users, n_features=8, n_informative=5,
                               n_redundant=1, flip_y=0.02, random_state=seed)
    return x, y
