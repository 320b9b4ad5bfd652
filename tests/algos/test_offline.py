"""Offline core and its three baselines: losses against hand computations, learning from data on a toy task,
exact resume through dataset hashes, and one clear error for each bad input."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from cairnrl import evaluate
from cairnrl.algos import ALGORITHMS, BC, IQL, TD3BC
from cairnrl.algos.offline.components import reward_scale
from cairnrl.algos.offline.iql import expectile_loss
from cairnrl.core.actors import GaussianActor, awr_weights
from cairnrl.core.ensemble import EnsembleMLP, polyak_update
from cairnrl.data import Dataset, Episode
from cairnrl.exceptions import CheckpointError, ConfigError, DatasetError, EnvError


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    torch.set_num_threads(1)


class PointGoal(gym.Env):
    """A point in [-1, 1]^2 moves by 0.2 * action per step; reward -|position - goal|; 15 steps per episode."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    goal = np.array([0.6, -0.4], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        self.steps = 0
        return self.position.copy(), {}

    def step(self, action):
        self.position = np.clip(self.position + 0.2 * np.clip(action, -1, 1), -1, 1).astype(np.float32)
        self.steps += 1
        reward = -float(np.linalg.norm(self.position - self.goal))
        return self.position.copy(), reward, False, self.steps >= 15, {}


def expert_action(position: np.ndarray) -> np.ndarray:
    return np.clip((PointGoal.goal - position) / 0.2, -1.0, 1.0).astype(np.float32)


def point_goal_data(n_expert: int, n_random: int, seed: int = 0) -> Dataset:
    """Episodes of a noisy expert and of a uniformly random policy (the rewards tell them apart)."""
    rng = np.random.default_rng(seed)
    env = PointGoal()
    episodes = []
    for index in range(n_expert + n_random):
        observation, _ = env.reset(seed=int(rng.integers(2**31)))
        observations, actions, rewards = [observation], [], []
        for _ in range(15):
            if index < n_expert:
                action = np.clip(expert_action(observation) + rng.normal(0, 0.1, 2), -1, 1).astype(np.float32)
            else:
                action = rng.uniform(-1, 1, 2).astype(np.float32)
            observation, reward, _, _, _ = env.step(action)
            observations.append(observation)
            actions.append(action)
            rewards.append(reward)
        episodes.append(Episode(np.array(observations), np.array(actions), np.array(rewards),
                                np.zeros(15, bool), np.eye(15, dtype=bool)[-1]))
    return Dataset.from_episodes(episodes, observation_space=env.observation_space, action_space=env.action_space)


# ----------------------------------------------------------------------------------------------- losses by hand


def test_expectile_loss_by_hand():
    diff = torch.tensor([1.0, -2.0, 0.5])
    expected = (0.7 * 1.0 + 0.3 * 4.0 + 0.7 * 0.25) / 3
    assert expectile_loss(diff, 0.7).item() == pytest.approx(expected)


def test_awr_weights_are_clipped_without_overflow():
    weights = awr_weights(torch.tensor([0.0, 1.0, 1e6]), beta=3.0, max_weight=100.0)
    assert weights.tolist() == pytest.approx([1.0, math.exp(3.0), 100.0])


def test_gaussian_log_prob_is_the_untransformed_normal():
    torch.manual_seed(0)
    actor = GaussianActor(3, 2, (8,))
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([-0.5, 0.3]))
    obs, action = torch.randn(5, 3), torch.rand(5, 2) * 2 - 1
    reference = torch.distributions.Normal(actor(obs), actor.log_std.exp()).log_prob(action).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, action), reference)


def test_ensemble_members_match_separate_linear_stacks():
    torch.manual_seed(0)
    ensemble = EnsembleMLP(3, 4, (8,), 2)
    x = torch.randn(6, 4)
    out = ensemble(x)
    assert out.shape == (3, 6, 2)
    first, last = ensemble.layers[0], ensemble.layers[2]
    for member in range(3):
        hidden = torch.relu(x @ first.weight[member] + first.bias[member])
        torch.testing.assert_close(out[member], hidden @ last.weight[member] + last.bias[member])
    torch.testing.assert_close(ensemble(x.expand(3, 6, 4)), out)  # per-member inputs give the same result


@pytest.mark.parametrize("layer_norm", [False, True])
def test_frozen_member_is_one_member_with_gradients_to_the_inputs_only(layer_norm):
    torch.manual_seed(0)
    ensemble = EnsembleMLP(2, 4, (8, 8), 1, layer_norm=layer_norm)
    x = torch.randn(5, 4, requires_grad=True)
    for member in range(2):
        out = ensemble.frozen_member(x, member)
        torch.testing.assert_close(out, ensemble(x)[member])
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in ensemble.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the output layer stays float32, as in forward()
        assert ensemble.frozen_member(x, 0).dtype == torch.float32
    with pytest.raises(ConfigError, match="member"):
        ensemble.frozen_member(x, 2)


def test_polyak_update():
    source, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    expected = [0.9 * t + 0.1 * s for t, s in zip(target.parameters(), source.parameters(), strict=True)]
    polyak_update(target, source, 0.1)
    for got, want in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want.detach())


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in module.state_dict().items()}


def test_iql_update_matches_the_papers_losses_by_hand():
    """Eq. (5) with the old V, then eq. (6) and (7) with the updated V, old critic and old actor."""
    data = point_goal_data(3, 3)
    model = IQL("MlpPolicy", data, seed=0, net_arch=(8,), actor_lr_decay_steps=None)
    batch = model.sampler.sample()
    old_value, old_critic, old_actor = _snapshot(model.value), _snapshot(model.critic), _snapshot(model.actor)
    losses = model._train_step(batch)
    call = torch.func.functional_call
    with torch.no_grad():
        pairs = torch.cat([batch.obs, batch.action], 1)
        target_q = call(model.critic, old_critic, (batch.obs, batch.action))  # online == target at the start
        target_q = torch.minimum(target_q[0], target_q[1])
        u = target_q - call(model.value, old_value, (batch.obs,))[:, 0]
        value_loss = (torch.where(u < 0, 0.3, 0.7) * u**2).mean()
        new_v, new_next_v = model.value(batch.obs)[:, 0], model.value(batch.next_obs)[:, 0]
        rewards = batch.reward * 1000.0 / (data.returns().max() - data.returns().min())
        td_target = rewards + 0.99 * (1 - batch.done) * new_next_v
        q = call(model.critic.online, {k.removeprefix("online."): v for k, v in old_critic.items()
                                       if k.startswith("online.")}, (pairs,))[..., 0]
        critic_loss = ((q[0] - td_target) ** 2).mean() + ((q[1] - td_target) ** 2).mean()
        weights = torch.clamp(torch.exp(3.0 * (target_q - new_v)), max=100.0)
        mean = torch.tanh(call(model.actor.mean_net, {k.removeprefix("mean_net."): v for k, v in old_actor.items()
                                                      if k.startswith("mean_net.")}, (batch.obs,)))
        log_prob = torch.distributions.Normal(mean, old_actor["log_std"].exp()).log_prob(batch.action).sum(-1)
        actor_loss = -(weights * log_prob).mean()
    assert losses["train/value_loss"].item() == pytest.approx(value_loss.item(), rel=1e-5)
    assert losses["train/critic_loss"].item() == pytest.approx(critic_loss.item(), rel=1e-5)
    assert losses["train/actor_loss"].item() == pytest.approx(actor_loss.item(), rel=1e-5)


def test_td3bc_actor_loss_is_eq_3():
    """lambda Q - BC with lambda = 2.5 / mean|Q| (detached), on normalised states, after the critic step."""
    data = point_goal_data(3, 3)
    model = TD3BC("MlpPolicy", data, seed=0, net_arch=(8,))
    batch = model.sampler.sample()
    old_actor = _snapshot(model.actor)
    losses = model._train_step(batch)  # update 0: critic step, then the (delayed) actor step
    with torch.no_grad():
        obs = (batch.obs - torch.as_tensor(data.observations.mean(0), dtype=torch.float32)) / (
            torch.as_tensor(data.observations.std(0), dtype=torch.float32) + 1e-3)
        action = torch.func.functional_call(model.actor, old_actor, (obs,))
        q_first = model.critic(obs, action)[0]
        expected = -(2.5 / q_first.abs().mean()) * q_first.mean() + ((action - batch.action) ** 2).mean()
    assert losses["train/actor_loss"].item() == pytest.approx(expected.item(), rel=1e-4)
    model._n_updates = 1  # the base counts updates in learn(); the actor is updated every policy_delay = 2
    assert "train/actor_loss" not in model._train_step(model.sampler.sample())


def test_reward_scale_is_1000_over_return_range():
    data = point_goal_data(2, 2)
    returns = data.returns()
    assert reward_scale(data, "return_range") == pytest.approx(1000.0 / (returns.max() - returns.min()))
    assert reward_scale(data, "none") == 1.0


# -------------------------------------------------------------------------------------------------- learning


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("algorithm", [IQL, TD3BC, BC])
def test_offline_learning_beats_random_on_point_goal(algorithm, precision):
    data = point_goal_data(n_expert=30, n_random=30)
    kwargs = {"net_arch": (64, 64), "learning_rate": 1e-3, "seed": 0, "eval_freq": 0, "precision": precision}
    model = algorithm("MlpPolicy", data.filter(lambda e: e.total_return > np.median(data.returns()))
                      if algorithm is BC else data, **kwargs)
    model.learn(1500)
    learned = evaluate(model, PointGoal(), n_episodes=20, seed=123).mean
    random = evaluate("random", PointGoal(), n_episodes=20, seed=123).mean
    expert = evaluate(lambda obs: expert_action(obs), PointGoal(), n_episodes=20, seed=123).mean
    assert learned > random + 0.8 * (expert - random), (learned, random, expert)


def test_bf16_precision_rounds_hidden_layers_and_keeps_outputs_in_float32():
    model = IQL("MlpPolicy", point_goal_data(3, 3), seed=0, net_arch=(32, 32), precision="bf16")
    hidden_dtypes = []
    model.value[0].register_forward_hook(lambda module, inputs, output: hidden_dtypes.append(output.dtype))
    obs, action = torch.zeros(4, 2), torch.zeros(4, 2)
    with model._precision_context():
        outputs = [model.value(obs), model.critic(obs, action), model.critic.target_min(obs, action),
                   model.actor(obs), model.actor.log_prob(obs, action)]
    assert hidden_dtypes == [torch.bfloat16]
    assert all(output.dtype == torch.float32 for output in outputs)
    # Outside the region (acting, evaluation, fp32 models) everything is float32 and OutputLinear is nn.Linear.
    model.value(obs)
    assert hidden_dtypes[-1] == torch.float32
    assert list(model.value.state_dict()) == list(torch.nn.Sequential(
        torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
        torch.nn.Linear(32, 1)).state_dict())


def test_bf16_forward_after_an_optimizer_step_sees_the_new_weights():
    """Within one update a network evaluated after its optimiser step (IQL's V in eq. 6 and 7) uses the stepped
    weights: the mixed-precision region must not serve a bfloat16 copy cached before the step."""
    model = IQL("MlpPolicy", point_goal_data(3, 3), seed=0, net_arch=(32, 32), precision="bf16")
    obs = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    with model._precision_context():
        before = model.value(obs)
        before.square().mean().backward()
        model.value_optimizer.step()
        with torch.no_grad():
            after = model.value(obs)
    with torch.no_grad(), model._precision_context():
        expected = model.value(obs)
    assert not torch.equal(after, before.detach())
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_bf16_loss_is_close_to_the_fp32_loss():
    """The same update's losses under mixed precision agree with float32 to bfloat16 accuracy (~1%)."""
    data = point_goal_data(10, 10)
    losses = {}
    for precision in ("fp32", "bf16"):
        model = IQL("MlpPolicy", data, seed=0, net_arch=(64, 64), precision=precision)
        batch = model.sampler.sample()
        with model._precision_context():
            losses[precision] = {name: float(value.detach()) for name, value in model._train_step(batch).items()}
    for name, value in losses["fp32"].items():
        assert losses["bf16"][name] == pytest.approx(value, rel=0.03, abs=1e-3), name


@pytest.mark.parametrize(("name", "kwargs"), [("iql", {}), ("fdvl", {}), ("recoil", {"variant": "official"}),
                                             ("recoil", {"variant": "paper"})])
def test_compiled_updates_match_eager_updates(name, kwargs):
    """``compile_graph=True`` runs the same losses through ``torch.compile``: after a few updates from the same seed
    every parameter agrees with eager mode to float32 rounding."""
    data = point_goal_data(4, 4)
    extra = {**kwargs, **({"expert_dataset": data.select(range(2))} if name == "recoil" else {})}
    parameters = {}
    for compile_graph in (False, True):
        model = ALGORITHMS[name]("MlpPolicy", data, seed=0, net_arch=(32, 32), batch_size=16, eval_freq=0,
                                 compile_graph=compile_graph, **extra)
        model.learn(3)
        parameters[compile_graph] = torch.cat([tensor.flatten() for state in model.get_parameters().values()
                                               for tensor in state.values()])
    assert parameters[True].shape == parameters[False].shape
    torch.testing.assert_close(parameters[True], parameters[False], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ checkpoints, data


def test_checkpoint_records_the_dataset_and_refuses_other_data(tmp_path):
    data = point_goal_data(3, 3)
    model = IQL("MlpPolicy", data, seed=0, net_arch=(8,))
    model.learn(10)
    path = model.save(tmp_path / "iql.zip")
    predictor = IQL.load(path)  # no dataset: prediction only
    np.testing.assert_array_equal(predictor.predict(data.observations[:4], deterministic=True)[0],
                                  model.predict(data.observations[:4], deterministic=True)[0])
    with pytest.raises(DatasetError, match="has no dataset"):
        predictor.learn(5)
    with pytest.raises(DatasetError, match="not the dataset the model was trained on"):
        IQL.load(path, dataset=point_goal_data(3, 3, seed=1))
    IQL.load(predictor.save(tmp_path / "again.zip"), dataset=data).learn(5, reset_num_timesteps=False)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError):
        IQL.load(truncated)


def test_periodic_evaluation_logs_the_return(tmp_path):
    data = point_goal_data(3, 3)
    model = BC("MlpPolicy", data, env=PointGoal(), seed=0, net_arch=(8,), eval_freq=10, eval_episodes=2,
               tensorboard_log=str(tmp_path))
    model.learn(20)
    run = next(tmp_path.iterdir())
    header = (run / "progress.csv").read_text().splitlines()[0]
    assert "eval/mean_reward" in header and "train/actor_loss" in header
    assert '"dataset"' in (run / "run.json").read_text()


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_inputs_raise_one_clear_error_each(tmp_path):
    data = point_goal_data(2, 2)
    with pytest.raises(DatasetError, match="no dataset at"):
        IQL("MlpPolicy", tmp_path / "missing.hdf5")
    with pytest.raises(DatasetError, match="empty"):
        IQL("MlpPolicy", data.select([]) if False else Dataset(
            np.zeros((1, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0), np.zeros(0, bool),
            np.zeros(0, bool), [0], validate=False))
    rewards = data.rewards.copy()
    rewards[3] = np.nan
    nan_data = Dataset(data.observations, data.actions, rewards, data.terminations, data.truncations,
                       data.episode_lengths, validate=False)
    with pytest.raises(DatasetError, match="NaN"):
        IQL("MlpPolicy", nan_data)
    wide = Dataset(data.observations, data.actions * 3, data.rewards, data.terminations, data.truncations,
                   data.episode_lengths, validate=False)
    with pytest.raises(DatasetError, match=r"outside \[-1, 1\]"):
        TD3BC("MlpPolicy", wide)
    with pytest.raises(EnvError, match="does not match the dataset"):
        IQL("MlpPolicy", data, env="Hopper-v5")
    with pytest.raises(ConfigError, match="expectile"):
        IQL("MlpPolicy", data, expectile=1.0)
    with pytest.raises(ConfigError, match="batch_size"):
        BC("MlpPolicy", data, batch_size=-4)
    with pytest.raises(ConfigError, match="policy_type"):
        BC("MlpPolicy", data, policy_type="diffusion")
    with pytest.raises(ConfigError, match="precision must be one of"):
        TD3BC("MlpPolicy", data, precision="fp16")
    missing = tmp_path / "no_rewards.npz"
    arrays = {k: v for k, v in data.to_d4rl().items() if k != "rewards"}
    np.savez(missing, **arrays)
    with pytest.raises(DatasetError, match="rewards"):
        BC("MlpPolicy", missing)
    with pytest.raises(DatasetError, match="dataset"):
        IQL("MlpPolicy", None, env=PointGoal())


def test_a_diverged_loss_stops_before_the_step_and_keeps_the_last_good_parameters():
    data = point_goal_data(3, 3)
    model = IQL("MlpPolicy", data, seed=0, net_arch=(8,))
    model.learn(3)
    actor = _snapshot(model.actor)
    with torch.no_grad():
        model.value[0].weight.fill_(float("nan"))
    with pytest.raises(ConfigError, match=r"IQL diverged: train/value_loss is nan at update 4"):
        model.learn(1, reset_num_timesteps=False)
    for name, value in model.actor.state_dict().items():
        assert torch.equal(value, actor[name])
