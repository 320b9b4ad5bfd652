"""ReCOIL: critic losses against hand computations, the two-set data contract, bad input and learning to imitate
from a mixture where only the hidden expert part is good."""

import numpy as np
import pytest
import torch
from dual_toy import datasets, score

from cairnrl.algos import BC, ReCOIL
from cairnrl.algos.offline.dual_losses import gumbel_loss, lsiq_critic_loss, mixture_chi2_critic_loss
from cairnrl.data import Dataset, collect, concatenate
from cairnrl.exceptions import ConfigError, DatasetError

TOY = {"learning_rate": 1e-3, "net_arch": (32, 32), "batch_size": 128, "eval_freq": 0}


def test_lsiq_targets_by_hand():
    """R = 2, gamma = 0.99: expert pairs regress to +200, offline pairs to -2 + 0.99 V(s') or, at a terminal, to
    -2 - 0.99 * 200."""
    q_expert = torch.tensor([[190.0], [200.0]])
    q_offline = torch.tensor([[0.0, 0.0], [1.0, -200.0]])
    next_value = torch.tensor([10.0, 50.0])
    done = torch.tensor([0.0, 1.0])
    loss = lsiq_critic_loss(q_expert, q_offline, next_value, done, gamma=0.99, reward_gap=2.0)
    target = [-2.0 + 9.9, -2.0 - 198.0]
    head0 = 0.5 * 100 + 0.5 * ((0 - target[0]) ** 2 + (0 - target[1]) ** 2) / 2
    head1 = 0.0 + 0.5 * ((1 - target[0]) ** 2 + (-200 - target[1]) ** 2) / 2
    assert loss.item() == pytest.approx(head0 + head1)


def test_mixture_chi2_loss_by_hand_and_its_implicit_reward():
    q_expert, value_expert = torch.tensor([[3.0, 1.0]]), torch.tensor([2.0, 2.0])
    bellman_expert, bellman_offline = torch.tensor([[1.0, -1.0]]), torch.tensor([[2.0]])
    loss = mixture_chi2_critic_loss(q_expert, value_expert, bellman_expert, bellman_offline, beta=0.25)
    assert loss.item() == pytest.approx(0.25 * ((2 - 3) + (2 - 1)) / 2 + 0.25 * (0.25 * 1.0 + 0.75 * 4.0))
    # On expert-only pairs the minimiser is Q = gamma V(s') + 2: an implicit reward of 2 (1 / (2 * 1/4)).
    q = torch.linspace(-5.0, 5.0, 10_001)
    losses = 0.5 * (1.0 - q) + 0.25 * 0.5 * (0.0 - q) ** 2  # beta = 0.5, V(s) = 1, gamma V(s') = 0
    assert q[losses.argmin()].item() == pytest.approx(2.0, abs=1e-3)


def test_needs_both_sets_and_refuses_bad_ones():
    mixture, expert = datasets()
    with pytest.raises(DatasetError, match="pass both dataset= .* and expert_dataset="):
        ReCOIL("MlpPolicy", mixture, **TOY)
    with pytest.raises(DatasetError, match="pass both"):
        ReCOIL("MlpPolicy", expert_dataset=expert, **TOY)
    empty = Dataset(
        np.zeros((1, 1), np.float32),
        np.zeros((0, 1), np.float32),
        np.zeros(0),
        np.zeros(0, bool),
        np.zeros(0, bool),
        [0],
        observation_space=expert.observation_space,
        action_space=expert.action_space,
        validate=False,
    )
    with pytest.raises(DatasetError, match="expert set is empty"):
        ReCOIL("MlpPolicy", mixture, expert_dataset=empty, **TOY)
    pendulum = collect("Pendulum-v1", "random", n_episodes=1, seed=0)
    with pytest.raises(DatasetError, match="expert set .* and the suboptimal set .* have different observation"):
        ReCOIL("MlpPolicy", mixture, expert_dataset=pendulum, **TOY)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variant": "theirs"}, "variant must be one of"),
        ({"beta": 1.0}, "beta"),
        ({"beta": 0.0}, "beta"),
        ({"temperature": 0.0}, "temperature"),
        ({"reward_gap": -1.0}, "reward_gap"),
        ({"gamma": 1.0}, "gamma"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    mixture, expert = datasets()
    with pytest.raises(ConfigError, match=match):
        ReCOIL("MlpPolicy", mixture, expert_dataset=expert, **{**TOY, **kwargs})


def test_load_checks_the_expert_set_and_predicts_without_data(tmp_path):
    mixture, expert = datasets()
    model = ReCOIL("MlpPolicy", mixture, expert_dataset=expert, seed=0, **TOY).learn(5)
    path = model.save(tmp_path / "recoil")
    predictor = ReCOIL.load(path)
    observation = np.array([[0.1]], np.float32)
    assert np.array_equal(
        predictor.predict(observation, deterministic=True)[0], model.predict(observation, deterministic=True)[0]
    )
    with pytest.raises(DatasetError, match="no expert set"):
        ReCOIL.load(path, dataset=mixture).learn(1)
    other = expert.select([1])
    with pytest.raises(DatasetError, match="not the expert set the model was trained on"):
        ReCOIL.load(path, dataset=mixture, expert_dataset=other)
    # saved again without data, the expert sampler's stream survives and a later resume is still exact
    again = ReCOIL.load(ReCOIL.load(path).save(tmp_path / "again"), dataset=mixture, expert_dataset=expert)
    direct = ReCOIL.load(path, dataset=mixture, expert_dataset=expert)
    assert torch.equal(again.expert_sampler.sample().obs, direct.expert_sampler.sample().obs)


def test_logs_q_statistics():
    mixture, expert = datasets()
    model = ReCOIL("MlpPolicy", mixture, expert_dataset=expert, seed=0, **TOY)
    losses = model._train_step(model.sampler.sample())
    assert {"train/q_mean", "train/q_max_abs", "train/value_loss", "train/critic_loss"} <= set(losses)


def test_official_value_loss_and_gradient_equal_the_whole_batch_form():
    """The official V loss averages the Gumbel regression over the offline half, with the expert half only in the
    rescaling maximum: computing the expert half without gradient gives the loss and V gradient of the form that
    runs V on the whole [offline | expert] batch."""
    mixture, expert = datasets()
    model = ReCOIL("MlpPolicy", mixture, expert_dataset=expert, seed=0, temperature=0.5, **TOY)
    offline, demos = model.sampler.sample(), model.expert_sampler.sample()
    obs, action, n = torch.cat([offline.obs, demos.obs]), torch.cat([offline.action, demos.action]), len(offline.obs)
    loss, target_q = model._value_loss(obs, action, n)
    fast = torch.autograd.grad(loss, list(model.value.parameters()))
    diff = model.critic.target_min(obs, action) - model.value(obs)
    whole = gumbel_loss(diff[:n], 0.5, model.max_clip, max_over=diff[n:])
    reference = torch.autograd.grad(whole, list(model.value.parameters()))
    assert loss.item() == pytest.approx(whole.item(), rel=1e-5)
    assert target_q.shape == diff.shape
    for mine, theirs in zip(fast, reference, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def bc_on_everything():
    torch.set_num_threads(1)
    mixture, expert = datasets()
    return score(BC("MlpPolicy", concatenate([mixture, expert]), seed=0, **TOY).learn(600))


@pytest.mark.parametrize("variant", ["official", pytest.param("paper", marks=pytest.mark.slow)])
def test_imitates_the_expert_hidden_in_a_bad_mixture(bc_on_everything, variant):
    """Only 10 of 50 episodes are expert and nothing marks them; two labelled demonstrations suffice for ReCOIL to
    near the expert (about -4) where cloning everything drifts away (about -44)."""
    torch.set_num_threads(1)
    mixture, expert = datasets()
    model = ReCOIL("MlpPolicy", mixture, expert_dataset=expert, variant=variant, seed=0, **TOY).learn(600)
    ours = score(model)
    assert bc_on_everything < -35.0
    assert ours > -15.0 and ours > bc_on_everything + 25.0
