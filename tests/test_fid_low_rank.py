"""FID of sets smaller than the feature dimension: the n x n route equals the d x d eigen-decompositions."""
import warnings

import numpy as np
import pytest

from art2real.metrics.fid import fid, frechet_distance, statistics


@pytest.mark.parametrize("n1, n2", [(5, 9), (10, 200), (200, 12), (3, 3)])
def test_small_sets_give_the_full_routes_fid(n1, n2):
    rng = np.random.default_rng(n1 * 1000 + n2)
    a, b = rng.normal(size=(n1, 64)), rng.normal(1, 2, size=(n2, 64)) ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = frechet_distance(*statistics(a), *statistics(b))
        assert fid(a, b) == pytest.approx(full, rel=1e-7)
        assert fid(b, a) == pytest.approx(full, rel=1e-7)  # symmetric
        assert fid(a, a) == pytest.approx(0, abs=1e-6 * full)


def test_large_sets_take_the_full_route():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(80, 16)), rng.normal(size=(90, 16)) + 1
    assert fid(a, b) == frechet_distance(*statistics(a), *statistics(b))
