"""The probabilistic dynamics ensemble, its holdout training, and model rollouts as datasets."""

import numpy as np
import pytest
import torch

from cairnrl.core.dynamics import DynamicsTrainer, ProbabilisticDynamics
from cairnrl.core.holdout import EpochBatches, ImprovementTracker, holdout_split
from cairnrl.data import Dataset
from cairnrl.data.rollouts import filtered_model_rollouts, model_rollouts, return_above, returns_to_go
from cairnrl.exceptions import ConfigError, DatasetError

A = torch.tensor([[0.9, 0.1], [-0.2, 0.8]])
B = torch.tensor([[0.5], [-0.3]])


def linear_data(n=2000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 2, generator=generator)
    action = torch.rand(n, 1, generator=generator) * 2 - 1
    next_obs = obs @ A.T + action @ B.T
    reward = obs[:, 0] - 0.5 * action[:, 0]
    return obs, action, reward, next_obs


def trained_model(max_epochs=60, seed=0, **model_kwargs):
    torch.manual_seed(seed)
    model = ProbabilisticDynamics(2, 1, hidden=(32, 32), weight_decay=(0.0, 0.0, 0.0), **model_kwargs)
    trainer = DynamicsTrainer(
        model, torch.optim.Adam(model.parameters(), lr=3e-3), batch_size=128, seed=seed, max_epochs=max_epochs
    )
    trainer.bind(*linear_data(seed=seed))
    while not trainer.done:
        trainer.update()
    return model, trainer


@pytest.fixture(scope="module")
def linear_model():
    torch.set_num_threads(1)
    return trained_model()


def test_learns_a_linear_system(linear_model):
    model, _ = linear_model
    obs, action, reward, next_obs = linear_data(500, seed=1)
    model.eval()
    with torch.no_grad():
        mean, _ = model(torch.cat([obs, action], dim=-1))
    prediction = mean[model.elites].mean(0) * model.target_std + model.target_mean
    assert (obs + prediction[:, :2] - next_obs).abs().mean() < 0.03
    assert (prediction[:, 2] - reward).abs().mean() < 0.03
    assert (model.mean_reward(obs, action) - reward).abs().mean() < 0.03
    # deterministic data: the learned noise is small, so samples stay close to the truth
    sampled, sampled_reward = model.sample(obs, action, torch.Generator().manual_seed(0))
    assert (sampled - next_obs).abs().mean() < 0.1 and (sampled_reward - reward).abs().mean() < 0.1


def test_elites_are_the_best_holdout_members(linear_model):
    model, trainer = linear_model
    mse = model.member_mse(trainer.holdout_inputs, trainer.holdout_targets)
    assert sorted(model.elites.tolist()) == sorted(torch.argsort(mse)[: model.n_elites].tolist())
    assert mse[model.elites].max() <= mse[[m for m in range(model.n_members) if m not in model.elites]].min()


def test_loss_matches_hand_computation():
    torch.manual_seed(0)
    model = ProbabilisticDynamics(2, 1, n_members=3, n_elites=2, hidden=(8,), weight_decay=(0.1, 0.2))
    obs, action, reward, next_obs = linear_data(16)
    inputs, targets = torch.cat([obs, action], -1), model.targets(obs, reward, next_obs)
    mean, logvar = model(inputs)
    nll = sum(((mean[m] - targets) ** 2 * torch.exp(-logvar[m]) + logvar[m]).mean() for m in range(3))
    layers = model.linear_layers()
    decay = 0.1 * 0.5 * (layers[0].weight ** 2).sum() + 0.2 * 0.5 * (layers[1].weight ** 2).sum()
    bounds = 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
    assert torch.allclose(model.loss(inputs, targets), nll + decay + bounds)
    assert (logvar <= model.max_logvar).all() and (logvar >= model.min_logvar).all()


def test_early_stopping_and_resume_of_the_trainer():
    tracker = ImprovementTracker(2, threshold=0.01, patience=2)
    assert tracker.update(torch.tensor([1.0, 1.0])).all()
    assert tracker.update(torch.tensor([0.995, 0.5])).tolist() == [False, True]
    tracker.update(torch.tensor([0.995, 0.499]))
    assert not tracker.stop
    tracker.update(torch.tensor([0.995, 0.499]))
    assert tracker.stop
    batches = EpochBatches(3, seed=0)
    batches.bind(7)
    seen = [batches.next() for _ in range(3)]
    assert [len(index) for index, _ in seen] == [3, 3, 1] and seen[-1][1] and batches.epoch == 1
    assert sorted(torch.cat([index for index, _ in seen]).tolist()) == list(range(7))
    copy = EpochBatches(3, seed=5)
    batches.next()
    copy.load_state(*batches.state())
    copy.bind(7)
    assert all(torch.equal(batches.next()[0], copy.next()[0]) for _ in range(5))
    train, holdout = holdout_split(100, 0.2, seed=0, max_holdout=10)
    assert len(holdout) == 10 and len(train) == 90 and not set(train.tolist()) & set(holdout.tolist())


def policy_zero(obs, generator):
    return torch.zeros(len(obs), 1)


def test_rollouts_shapes_returns_to_go_and_filter(linear_model):
    model, _ = linear_model
    starts = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    data = model_rollouts(model, policy_zero, starts, horizon=7, generator=torch.Generator().manual_seed(1))
    assert isinstance(data, Dataset) and data.num_episodes == 5 and data.num_steps == 35
    assert data.observations.shape == (40, 2) and data.actions.shape == (35, 1)
    assert data.truncations.reshape(5, 7)[:, -1].all() and not data.terminations.any()
    assert np.allclose(data.observations[::8], starts.numpy())
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    assert torch.equal(returns_to_go(rewards), torch.tensor([[6.0, 5.0, 3.0], [4.0, 4.0, 5.0]]))
    (obs, actions, kept_rewards), rounds = filtered_model_rollouts(
        model,
        policy_zero,
        starts,
        6,
        return_above(0.0),
        n_needed=8,
        generator=torch.Generator().manual_seed(2),
        batch_size=10,
    )
    assert len(obs) >= 8 and obs.shape[1:] == (7, 2) and actions.shape[1:] == (6, 1) and rounds >= 1
    assert (kept_rewards.sum(1) > 0).all()


def test_rollout_bad_input(linear_model):
    model, _ = linear_model
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(DatasetError, match="start state"):
        filtered_model_rollouts(model, policy_zero, torch.zeros(0, 2), 5, return_above(0.0), 3, generator)
    with pytest.raises(ConfigError, match="n_needed"):
        filtered_model_rollouts(model, policy_zero, torch.zeros(4, 2), 5, return_above(0.0), 0, generator)
    with pytest.raises(DatasetError, match=r"kept 0 of the 3 .* after 4 rounds"):
        filtered_model_rollouts(
            model, policy_zero, torch.zeros(4, 2), 5, return_above(1e9), 3, generator, batch_size=8, max_rounds=4
        )
