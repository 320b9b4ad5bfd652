"""f-DVL: each loss against a hand computation, bad input, divergence handling and learning on a toy mixture."""

import math

import numpy as np
import pytest
import torch
from dual_toy import datasets, score

from cairnrl.algos import BC, FDVL
from cairnrl.algos.offline.dual_losses import (
    action_gradient_penalty,
    chi2_conjugate,
    dual_v_loss,
    gumbel_loss,
    twin_huber_loss,
)
from cairnrl.algos.offline.fdvl import DEFAULT_TEMPERATURES
from cairnrl.core.ensemble import EnsembleMLP
from cairnrl.exceptions import ConfigError

TOY = {"learning_rate": 1e-3, "net_arch": (32, 32), "batch_size": 128, "eval_freq": 0}


def test_chi2_is_the_exact_conjugate_with_positivity():
    y = torch.tensor([-3.0, -2.0, 0.0, 2.0])
    assert chi2_conjugate(y).tolist() == [-1.0, -1.0, 0.0, 3.0]
    # sup_w [w y - (w - 1)^2] over w >= 0, by brute force on a grid
    w = torch.linspace(0.0, 10.0, 100_001)
    brute = torch.stack([(w * v - (w - 1) ** 2).max() for v in y])
    assert torch.allclose(chi2_conjugate(y), brute, atol=1e-6)
    # lambda = 0.5: mean(0.5 f*(y) - 0.5 y) = mean([1, 0.5, 0, 0.5])
    assert dual_v_loss(y, 0.5, "chi2").item() == pytest.approx(0.5)


def test_chi2_reference_has_a_dead_zone_on_minus_four_to_zero():
    y = torch.tensor([-5.0, -3.0, -1.0, 1.0], requires_grad=True)
    loss = dual_v_loss(y, 1.0, "chi2-reference")
    assert loss.item() == pytest.approx((1.25 + 0 + 0 + 1.25) / 4)
    loss.backward()
    assert y.grad.tolist() == pytest.approx([-1.5 / 4, 0.0, 0.0, 1.5 / 4])  # (1 + y/2) / n outside the zone


def test_tv_is_a_pinball_loss_whose_minimiser_is_a_quantile():
    y = torch.tensor([-1.0, 2.0])
    assert dual_v_loss(y, 0.8, "tv").item() == pytest.approx((0.2 + 1.2) / 2)
    q = torch.arange(100.0)
    candidates = torch.linspace(0.0, 99.0, 991)
    losses = torch.stack([dual_v_loss(q - v, 0.8, "tv") for v in candidates])
    best = candidates[losses.argmin()].item()
    assert 73.0 <= best <= 75.0  # the (2 lambda - 1) / lambda = 0.75 quantile


def test_gumbel_loss_clips_and_rescales_by_the_batch_max():
    diff = torch.tensor([1.0, 3.0, -2.0], requires_grad=True)
    loss = gumbel_loss(diff, temperature=2.0, max_clip=1.0)
    z, m = [0.5, 1.0, -1.0], 1.0  # 3 / 2 clipped to 1
    expected = sum(math.exp(v - m) - v * math.exp(-m) - math.exp(-m) for v in z) / 3
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert diff.grad[1].item() == 0.0  # the clipped entry passes no gradient
    assert diff.grad[0].item() == pytest.approx((math.exp(0.5 - m) - math.exp(-m)) / 2 / 3)
    # the maximum is floored at -1, and max_over only enters the maximum
    low = torch.tensor([-6.0, -8.0])
    assert gumbel_loss(low, 2.0, None).item() == pytest.approx(
        sum(math.exp(v + 1) - v * math.e - math.e for v in (-3.0, -4.0)) / 2
    )
    pooled = gumbel_loss(low, 2.0, None, max_over=torch.tensor([4.0]))
    assert pooled.item() == pytest.approx(sum(math.exp(v - 2) - (v + 1) * math.exp(-2) for v in (-3.0, -4.0)) / 2)


def test_twin_huber_loss_with_delta_20():
    q = torch.tensor([[30.0, 2.0], [0.0, 0.0]])
    loss = twin_huber_loss(q, torch.zeros(2))
    assert loss.item() == pytest.approx((0.5 * 400 + 20 * 10 + 2) / 2)


def test_gradient_penalty_uses_each_heads_own_gradient():
    net = EnsembleMLP(2, 3, (), 1)  # linear heads on concat(s (1 dim), a (2 dims))
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor([[[5.0], [3.0], [0.0]], [[5.0], [0.3], [0.4]]]))
    inputs = torch.randn(4, 3)
    # head 0: ||grad_a|| = 3 -> (3 - 1)^2 = 4; head 1: ||grad_a|| = 0.5 -> 0 (the reference code would give 8)
    assert action_gradient_penalty(net, inputs, action_dim=2).item() == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("f", "temperature", "match"),
    [
        ("chi2", 1.5, "temperature"),
        ("chi2", 0.0, "temperature"),
        ("chi2-reference", -0.1, "temperature"),
        ("tv", 0.5, "temperature"),
        ("tv", 0.3, "temperature"),
        ("reverse-kl", 0.0, "temperature"),
        ("hellinger", 0.8, "f must be one of"),
    ],
)
def test_bad_temperature_or_f_raises(f, temperature, match):
    with pytest.raises(ConfigError, match=match):
        FDVL("MlpPolicy", datasets()[0], f=f, temperature=temperature, **TOY)


def test_reverse_kl_takes_gumbel_temperatures_above_one():
    assert FDVL("MlpPolicy", datasets()[0], f="reverse-kl", temperature=8.0, **TOY).temperature == 8.0


def test_divergence_stops_before_the_step_and_keeps_finite_parameters(tmp_path):
    model = FDVL("MlpPolicy", datasets()[0], seed=0, **TOY).learn(3)
    before = {name: tensor.clone() for name, tensor in model.critic.state_dict().items()}
    model._reward_scale = math.inf  # the TD target, hence the critic loss, becomes infinite
    with pytest.raises(ConfigError, match=r"critic_loss is (inf|nan) at update 4"):
        model.learn(5, reset_num_timesteps=False)
    assert model.num_timesteps == 3
    for name, tensor in model.critic.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    loaded = FDVL.load(model.save(tmp_path / "last_good"))
    assert all(torch.isfinite(p).all() for module in loaded.get_parameters().values() for p in module.values())


@pytest.fixture(scope="module")
def bc_on_everything():
    torch.set_num_threads(1)
    return score(BC("MlpPolicy", datasets()[0], seed=0, **TOY).learn(600))


@pytest.mark.parametrize(
    ("f", "temperature"),
    [
        ("chi2", 0.8),
        pytest.param("tv", 0.8, marks=pytest.mark.slow),
        pytest.param("chi2-reference", 1.0, marks=pytest.mark.slow),
        pytest.param("reverse-kl", 2.0, marks=pytest.mark.slow),
    ],
)
def test_learns_the_good_part_of_a_mixed_dataset(bc_on_everything, f, temperature):
    """Rewards make the few good episodes stand out: f-DVL nears the expert (about -4) where cloning everything
    drifts away (about -44)."""
    torch.set_num_threads(1)
    model = FDVL("MlpPolicy", datasets()[0], f=f, temperature=temperature, seed=0, **TOY).learn(600)
    ours = score(model)
    assert bc_on_everything < -35.0
    assert ours > -15.0 and ours > bc_on_everything + 25.0
    assert np.isfinite(ours)


@pytest.mark.parametrize(("temperature", "offset"), [(0.5, 0.0), (0.8, -1.5), (0.4, 1.0)])
def test_exact_chi2_value_settles_where_the_implied_ratio_averages_to_its_lambda_target(temperature, offset):
    # Stationarity of E[lambda f*(Q - V) - (1 - lambda)(Q - V)] in V: 1 + y/2 = (1 - lambda) / lambda, so with one
    # Q value V sits at Q - y: on Q at lambda = 1/2, 1.5 above it at the authors' 0.8.
    q = torch.full((8,), 3.0)
    v = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([v], lr=0.5)
    for _ in range(500):
        optimizer.zero_grad()
        dual_v_loss(q - v, temperature, "chi2").backward()
        optimizer.step()
    assert (q - v).detach() == pytest.approx(torch.full((8,), offset), abs=1e-4)


def test_temperature_defaults_per_f():
    for f, expected in DEFAULT_TEMPERATURES.items():
        assert FDVL("MlpPolicy", datasets()[0], f=f, **TOY).temperature == expected
    assert DEFAULT_TEMPERATURES["chi2"] == 0.5
    assert FDVL("MlpPolicy", datasets()[0], f="tv", temperature=0.9, **TOY).temperature == 0.9
