from itertools import islice

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from cairnrl.core.global_rng import get_rng_state, seed_everything, set_rng_state
from cairnrl.core.seeding import check_seed, seed_sequence, seed_stream, spawn_seeds
from cairnrl.core.stats import iqm, stratified_bootstrap_ci
from cairnrl.exceptions import ConfigError, StatisticsError


def test_spawn_seeds_are_reproducible_and_do_not_overlap_across_master_seeds():
    assert spawn_seeds(0, 4) == spawn_seeds(0, 4)
    assert len(set(spawn_seeds(0, 4))) == 4
    assert not set(spawn_seeds(0, 4)) & set(spawn_seeds(1, 4))  # seed + i would overlap here
    assert spawn_seeds(0, 2, key=1) != spawn_seeds(0, 2, key=2)


def test_derived_seeds_are_pinned():
    # Changing a derivation changes every result; these values must never move.
    assert spawn_seeds(0, 3, key=1) == [1805848317, 1466144002, 1016617948]
    assert spawn_seeds(7, 2, key=(20, 3)) == [1952925578, 697885691]


def test_the_three_derivations_agree():
    assert list(islice(seed_stream(5, key=0xC0_11EC), 6)) == spawn_seeds(5, 6, key=0xC0_11EC)
    raw = np.random.SeedSequence(2**40, spawn_key=(3,))
    assert seed_sequence(2**40, key=3).generate_state(4).tolist() == raw.generate_state(4).tolist()
    assert seed_sequence(9, key=(1, 2)).spawn_key == (1, 2)
    with pytest.raises(ConfigError, match="non-negative"):
        seed_sequence(-1)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, 2**40])
def test_check_seed_rejects(bad):
    with pytest.raises(ConfigError, match="seed"):
        check_seed(bad)


def test_rng_state_round_trip():
    seed_everything(3)
    state = get_rng_state()
    first = (np.random.rand(3), torch.rand(3))
    set_rng_state(state)
    second = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_iqm_matches_hand_computation():
    # 8 values: drop the lowest two and highest two, mean of the middle four.
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx((3 + 4 + 5 + 6) / 4)
    with pytest.raises(StatisticsError):
        iqm([])
    rng = np.random.default_rng(1)
    for n in range(1, 30):  # the same operations as scipy's trim_mean, so the same value to the last bit
        values = rng.normal(size=n)
        assert iqm(values) == float(scipy_stats.trim_mean(values, 0.25))


def test_stratified_bootstrap_ci_brackets_the_point_and_degenerates_for_constant_data():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(10, 3))
    point, low, high = stratified_bootstrap_ci(scores, lambda m: float(m.mean()), n_resamples=500, seed=1)
    assert low <= point <= high and high - low > 0.1
    point, low, high = stratified_bootstrap_ci(np.full((5, 2), 7.0), lambda m: float(m.mean()), n_resamples=50)
    assert point == low == high == 7.0
