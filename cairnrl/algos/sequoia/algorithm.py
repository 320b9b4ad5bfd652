"""SEQUOIA: deep Q-learning whose argmax over combinatorial actions is a mixed-integer program.

Xu, Wilder, Khalil and Tambe, "Reinforcement Learning with Combinatorial Actions for Coupled Restless Bandits",
ICLR 2025 (arXiv 2503.01919); released code ``github.com/lily-x/combinatorial-rmab``.

A Q-network ``Q([a, s])`` (state and binary action vector in, one scalar out; section 4.1) is trained by DQN. Every
greedy action is ``argmax_{a in A} Q([a, s])`` over the problem's feasible set A, found exactly by embedding the
ReLU network in a MILP together with A (:class:`~cairnrl.mip.ArgmaxSolver`; section 4). The training loop
(section 4.1, Algorithm 1, as the released ``DQNSolver.train`` runs it):

1. **Warm start** (:mod:`.warm_start`): fit Q to the myopic expected reward on the reference's strategic and
   random (state, action) pairs; copy it into the target network; seed the replay memory with 10 % of the pairs.
2. **DQN**: per env step, act epsilon-greedily (epsilon = final + (initial - final) exp(-t / decay); the random
   action is the problem's random *feasible* action, optionally held for several steps, see below), store
   ``(s, a, s', r)`` with ``r`` the expected next-step reward (the paper's variance reduction), then take one
   gradient step on the IS-weighted Huber loss against ``r + gamma Q_target(s', argmax_a Q_target(s', a))`` with
   target answers memoised per next state (:mod:`.targets`), clipping gradient values at 5.

Departures from the released code, each deliberate (the reference behaviour stays reachable by parameters):

* **The target network moves.** The reference soft-updated it with tau = 1e-6 per step (0.2 % drift in 2,000
  steps), so its targets were the warm-start net at its own argmax: about one Bellman backup on top of myopic.
  Default: a hard copy every ``target_update_interval = 300`` steps, the reference's commented-out option.
  Reference: ``tau=1e-6, target_update_interval=1``.
* **Priorities are updated** with ``|TD error|`` after every gradient step; the reference never updated them, so
  its prioritised replay was uniform with unit weights. Reference: ``replay="uniform"``.
* **The learning rate stays constant** (``lr_decay=1.0`` per episode); the reference multiplied it by 0.9 per
  episode, down to ~7e-9 by episode 100. Reference: ``lr_decay=0.9``.
* **Fast targets.** Open-source MILP solves take seconds, so targets default to a batched sampling + local-search
  maximiser checked against the exact solver every ``target_check_interval`` gradient steps, with the measured gap
  logged (see :mod:`.targets`). Paper-faithful: ``target_maximizer="exact"``. Measured by ``cairnrl bench
  sequoia_solvers``: at J = 20 it is 2 ms per state and matched the exact optimum in 80/80 checked states; at
  J >= 40 on the path problem every candidate needs a tour check (a MILP above 12 stations), which makes it slower
  than exact targets: there use ``target_maximizer="exact"`` (and ``relaxed_targets=True`` as the reference).
* **Exact targets over the true feasible set** (``relaxed_targets=False``): the reference maximised path targets
  over the budget-only relaxation to keep its MILPs small, which makes them optimistic. Reference:
  ``relaxed_targets=True``. Acting always uses the full constraints (the env refuses infeasible actions).
* **Memo validity.** With hard updates the memo is cleared whenever the target network is copied, so every answer
  belongs to the network it is used with; with soft updates (``tau < 1``) it is cleared after every episode, the
  reference's effective behaviour.
* **Warm-start length.** The reference ran 300 epochs with the learning rate multiplied by 0.9 per epoch: 99.5 %
  of the summed step size falls in the first 50, our default ``warm_start_epochs``.
* **Rewards, not costs**: Q estimates reward and the MILP maximises; the reference trained on costs and minimised
  (mixing the two conventions would pick the worst action). The input order is ``[a, s]`` as in the reference,
  whose MILP encoder assumes the action coordinates come first.
* **Bootstrapping at the horizon.** As in the reference, targets always bootstrap: the coRMAB envs
  truncate after H steps but never terminate, and Gymnasium's truncation is not a terminal state.
* **Diagnostics.** Every ``diagnostic_interval`` env steps the number of distinct greedy actions over fixed probe
  states, the mean Q and the Q range across actions are logged (:meth:`SEQUOIA.greedy_diagnostics`), with the mean
  absolute TD error per episode. Measured with the paper's target and step size on the J = 20 matching instance 0:
  the probe states' distinct greedy actions fall 8 -> 3 -> 2 -> 1 at 500/1,000/1,500/2,000 steps while the mean Q
  climbs 27 -> 68 (the greedy policy becomes one constant action as the bootstrapped value level rises);
  gamma = 0.9 with target copies every 100 steps (5 -> 3 by 1,000 steps) and a (64, 64) network (15 -> 1) do not
  prevent it. On small instances solved exactly (:mod:`cairnrl.envs.cormab.exact`) the best single constant action
  is within 1 % of the optimum, so a constant greedy action is not by itself a failure on these reward tables; which
  constant action it is decides, and the benchmark reports both.
* **Reward centring, and why it is the default** (``reward_centering=0.01``, ``learning_rate=1e-3``; the paper's
  target and step size are ``reward_centering=0``, ``learning_rate=2.5e-4``): the TD target becomes ``r - rbar + gamma
  Q_target(s', a*)`` with ``rbar`` a running average of the replayed rewards (step size ``reward_centering``; Naik,
  Wan, Tomar and Sutton, "Reward Centering", RLC 2024). It removes the common ``rbar / (1 - gamma)`` level from Q
  without changing which action is greedy in exact arithmetic. The collapse above comes from that level. At gamma =
  0.99 the optimal Q sits near ``100 rbar`` while its gaps between actions are small against it, and the learned level
  is still climbing after 2,000 steps (bootstrapping adds about one reward per target copy). The greedy action is
  replayed most, so its Q follows the rising targets first and the rarely taken actions lag behind a moving level: the
  action that is ahead stays ahead, whatever its true value. The discount is not the cause (the greedy policy of the
  exact discounted optimum is optimal for the finite horizon too: ``optimal_stationary`` in the benchmark's
  small-instance table), nor, in our probes, the network's size (the (16, 32) network regressed on the exact Q* acts
  near-optimally) or the target-copy interval (copies every 50 steps at gamma = 0.8 still settle on a wrong action).
  With centring Q only carries the differences between actions and states, and the larger step size lets it follow
  them within the 2,000-step budget; centring alone, at the old step size, lost on other instances. The price is a
  slow start: the warm start fits rewards, not centred values, so for the first several hundred steps the greedy
  policy is worse than with the paper's target. Both settings, learning curves included: ``cairnrl bench sequoia``
  ("sequoia (full)" in BENCHMARKS.md; the quick mode's 400 steps fall in the slow start).
* **Temporally-extended exploration** (optional, ``exploration_duration_exponent=2``; off by default, the paper's
  one-step epsilon-greedy): an exploratory random feasible action is held for ``n ~ zeta(2)`` env steps within the
  episode (:class:`~cairnrl.core.exploration.ExtendedEpsilonGreedy`; Dabney, Ostrovski and Barreto,
  "Temporally-Extended epsilon-Greedy Exploration", ICLR 2021; 2 is that paper's default, not tuned here). On some
  small multiple-interventions instances solved exactly, the optimal action is worse than others myopically and on
  average over joint states, and best only from the low start states, where it pays after several consecutive
  pulls; one-step dithering tries ``n`` such pulls in a row with probability ``epsilon^n``. Compared with one-step
  exploration under the default centred target, it raised the worst small multiple-interventions and path
  instances towards the optimum, but at J = 20 (the benchmark's five instances) it gained only on multiple
  interventions and lost on path, matching and capacity, where its learning curves are noisier within the 2,000
  steps; so it is off by default. To compare on an instance, train both settings and score them with
  :class:`~cairnrl.envs.cormab.exact.ExactMDP` as ``cairnrl bench sequoia``'s small-instance runs do.
* **Warm-start anchor** (optional, ``warm_start_anchor > 0``, our addition; off by default, the paper's loss): the
  warm start is kept as a regulariser, not only an initialisation. The frozen warm-start network M adds
  ``warm_start_anchor * mean((Q(s, a) - Q(s, a')) - (M(s, a) - M(s, a')))^2`` to the loss, with a' another replayed
  action in the same state: Q's value level may grow through bootstrapping, but its ranking of actions may only depart
  from the myopic one where the TD error pays for it. Measured with the paper's target and step size on instance 0 at
  J = 20 (1,000 env steps, 20 evaluation episodes, seed 0): matching 15.62 per step with 4 distinct probe greedy
  actions throughout, against 14.55 and 6 -> 3 without; capacity 17.06 (3 -> 5 distinct) against 16.36 (8 -> 3). The
  Whittle-index policy still scores higher on both (17.37 and 18.82). It is not the default because it costs where the
  optimum departs from myopic: on the J = 6 capacity instance 0 (500 steps, 10 warm-start epochs) the greedy policy
  reaches 0.85 of the finite-horizon optimum with ``warm_start_anchor=1`` against 0.9996 without (myopic: 0.39).
* **Dueling Q-network** (optional, ``dueling=True``, with :mod:`.networks`; off by default, the paper's single
  network; Wang, Schaul, Hessel, van Hasselt, Lanctot and de Freitas, "Dueling Network Architectures for Deep
  Reinforcement Learning", ICML 2016): ``Q(s, a) = V(s) + A(s, a) - A(s, 0)`` with ``V`` an MLP on the state, ``A`` an
  MLP on ``[a, s]`` and the null action as reference. The level that bootstrapping builds up (towards ``r / (1 -
  gamma)``) goes into ``V`` and ``A`` carries the differences between actions; since ``V(s) - A(s, 0)`` is constant in
  ``a``, the MILP, enumeration and fast maximisers run on ``A`` alone and stay exact. Targets are ``r + gamma
  (V_target(s') + A_target(s', a*) - A_target(s', 0))``; the warm start fits the whole ``Q``. Measured with the
  paper's target and step size by ``benchmarks/sequoia_collapse.py`` on instance 0 at J = 20 (seed 0, 20 evaluation
  episodes; the single network in brackets): at 1,000 env steps matching 16.19 per step (14.55) and capacity 18.60
  (16.36), at 2,000 steps 16.34 (14.83) and 18.60 (16.44); the Whittle-index policy scores 17.45 and 18.82. It delays
  the collapse described under *Diagnostics* but does not prevent it: on matching the probe states' distinct greedy
  actions go 5 -> 4 -> 1 at 0/1,000/2,000 steps (the single network: 4 -> 3 -> 1), where the Whittle policy takes 14
  distinct actions over the same states. On capacity the Whittle policy takes one action over all 200 probe states,
  and the dueling network ends at one too. It is not the default because it costs on the small instances solved
  exactly (J = 6, B = 2, instances 0-4, 500 env steps, 10 warm-start epochs), where the optimum takes one action in
  nearly every state: mean fraction of the finite-horizon optimum 0.948 on matching and 0.907 on capacity (worst
  instance 0.879, 0.805) against 0.973 and 0.944 (0.909, 0.831) with the single network; Whittle 0.9999 and 0.9991.
  With the default 50-epoch warm start: 0.935 and 0.888 against 0.943 and 0.915. Double-Q targets (``double_q=True``;
  van Hasselt, Guez and Silver, "Deep Reinforcement Learning with Double Q-learning", AAAI 2016) on top of it changed
  little: 15.22 and 18.60 per step at 1,000 steps, 0.948 and 0.909 at J = 6, with the same mean Q, so the maximisation
  bias over the feasible set is not what lifts the value level. With the centred target and held exploration the
  dueling network did better on small multiple-interventions instances but worse at J = 20 on matching, at about
  1.5 times the training time, so it stays off.
* **Horizon.** The observation holds the arm states only, not the step within the episode, so a finite-horizon Q
  (time-to-go as an input, zero bootstrap at H) cannot be represented or acted on through ``predict``; targets keep
  bootstrapping through the truncation as above.
* **Whole episodes.** ``learn`` finishes the running episode before it returns (``total_timesteps`` is a lower
  bound, as in SB3), so a checkpoint never cuts an episode and ``load`` + ``learn(reset_num_timesteps=False)``
  continues exactly. A callback that stops training mid-episode drops the rest of that episode.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn
from tqdm.auto import tqdm

from cairnrl.algos.sequoia.networks import argmax_network, q_network
from cairnrl.algos.sequoia.replay import REPLAY_MODES, ReplayMemory
from cairnrl.algos.sequoia.targets import TARGET_MODES, TargetMaximizer, TargetStatistics, td_targets
from cairnrl.algos.sequoia.warm_start import fit_myopic, warm_start_dataset
from cairnrl.core import checkpoint as ckpt
from cairnrl.core.base import BaseAlgorithm, GymEnv, check_policy
from cairnrl.core.evaluation import EvaluationResult, evaluate, final_evaluation_seed
from cairnrl.core.exploration import ExtendedEpsilonGreedy
from cairnrl.core.seeding import generator_state, restore_generator, spawn_seeds
from cairnrl.core.validation import check_bool, check_choice, check_float, check_int, check_int_tuple
from cairnrl.envs.cormab.base import CoRMABProblem, problem_of
from cairnrl.envs.cormab.chain import N_STATES
from cairnrl.exceptions import ConfigError, EnvError
from cairnrl.mip.argmax import METHODS, ArgmaxSolver
from cairnrl.mip.heuristic import fast_argmax, fast_options, q_values
from cairnrl.mip.solvers import get_solver

_EPISODE_SEED_KEY = 20
_ACTION_RNG_KEY = 21
_BATCH_RNG_KEY = 22
_TARGET_RNG_KEY = 23
_WARM_RNG_KEY = 24
_SOLVER_SEED_KEY = 25
_PROBE_KEY = 26
_RNG_NAMES = ("action", "batch", "target", "warm")


def _optional_positive(name: str, value: Any) -> float | None:
    return None if value is None else check_float(name, value, low=0.0, low_inclusive=False)


class SEQUOIA(BaseAlgorithm):
    """SEQUOIA (Xu et al., ICLR 2025): DQN with a MILP argmax over combinatorial actions (module docstring).

    :param policy: ``"MlpPolicy"`` (the Q-network is a ReLU MLP on ``[a, s]``, the form the MILP encodes).
    :param env: a coRMAB env (``cairnrl/CoRMAB-*-v0`` or any :class:`~cairnrl.envs.cormab.CoRMABEnv`).
    :param net_arch: hidden layer sizes (reference: 16, 32; every unit can add a binary to the MILP); with
        ``dueling`` those of both the advantage and the value MLP.
    :param dueling: ``Q(s, a) = V(s) + A(s, a) - A(s, 0)`` (:mod:`.networks`; Wang et al., 2016), the MILP encoding
        only the advantage MLP; ``False`` is the paper's single MLP on ``[a, s]``.
    :param learning_rate: AdamW step size (amsgrad, as the reference; reference 2.5e-4).
    :param adam_eps: AdamW epsilon.
    :param lr_decay: learning-rate factor applied after every episode (1.0 = constant; reference 0.9).
    :param batch_size: transitions per gradient step.
    :param buffer_size: replay capacity.
    :param gamma: discount.
    :param double_q: double-Q targets (van Hasselt, Guez and Silver, AAAI 2016): ``a*`` maximises the online network
        (fast maximiser, no memo) and the target network values it; needs ``target_maximizer="fast"``.
    :param reward_centering: step size of the running average-reward estimate subtracted from every reward in the
        TD targets (reward centring, module docstring); 0 turns it off, the paper's targets.
    :param gradient_steps: gradient steps per env step.
    :param learning_starts: env steps before the first gradient step.
    :param max_grad_value: gradient values are clipped to ``[-max_grad_value, max_grad_value]``.
    :param target_update_interval: env steps between target-network updates.
    :param tau: target update coefficient: 1 copies the network, ``tau < 1`` is a Polyak average (reference 1e-6).
    :param replay: ``"prioritized"`` (priorities = |TD error|) or ``"uniform"`` (the reference's effective replay).
    :param per_alpha: priority exponent.
    :param per_beta: importance-sampling exponent.
    :param exploration_initial_eps: epsilon at step 0 (reference 0.9).
    :param exploration_final_eps: epsilon's limit (reference 0.05).
    :param exploration_decay: e-folding time of epsilon in env steps (reference 1000).
    :param exploration_duration_exponent: exploratory actions are held for ``n ~ zeta(mu)`` env steps within the
        episode, ``mu`` this exponent (> 1, e.g. 2; temporally-extended epsilon-greedy, module docstring); ``None``
        (default) is the paper's one-step epsilon-greedy. Stochastic :meth:`predict` calls stay one-step.
    :param use_expected_reward: learn from ``info["expected_reward"]`` (the paper's variance reduction) instead of
        the env's reward.
    :param warm_start: run the myopic warm start before the first DQN step.
    :param warm_start_epochs: epochs of the warm-start regression.
    :param warm_start_batch_size: its minibatch size.
    :param warm_start_lr_decay: its learning-rate factor per epoch (reference 0.9).
    :param warm_start_random_states: random states of the warm-start data; ``None`` means 50 times the horizon.
    :param warm_start_random_actions: random feasible actions per warm-start state (reference 10).
    :param warm_start_replay_fraction: the replay memory is seeded with this fraction of its capacity in
        warm-start transitions (reference 0.1, i.e. 1,000).
    :param warm_start_anchor: weight of the penalty keeping Q's action differences close to the warm-start
        network's (module docstring); 0 turns it off, the paper's loss.
    :param target_maximizer: ``"fast"`` (sampling + local search, checked against the exact solver) or ``"exact"``.
    :param target_check_interval: in fast mode, every this many gradient steps the batch's targets are also solved
        exactly, the gap is logged and the better answer used (0 never checks).
    :param fast_target_kwargs: options of the fast maximiser (``n_samples``, ``n_starts``, ``max_moves``,
        ``max_checks``; see :func:`~cairnrl.mip.heuristic.fast_argmax`).
    :param relaxed_targets: maximise targets over the problem's training relaxation (the path problem's budget-only
        set, as the reference); acting always uses the full feasible set.
    :param solver: MILP backend (``"highs"``, ``"scip"``, ``"ortools"``, ``"gurobi"``).
    :param solver_method: ``"milp"``, ``"enumerate"`` (score every feasible action; exact while the set is small)
        or ``"auto"`` (enumerate up to ``enumeration_limit`` candidates, else the MILP).
    :param enumeration_limit: most candidate actions enumeration may check.
    :param time_limit: seconds per acting MILP before the incumbent is used (``None``: no cap).
    :param target_time_limit: seconds per exact target MILP (``None``: no cap).
    :param abs_gap: absolute MIP gap; ``None`` means 1e-4 times the problem's largest one-step reward.
    :param diagnostic_interval: every this many env steps (at the end of an episode) log
        :meth:`greedy_diagnostics` under ``diagnostics/`` (0 never does).
    :param n_probe_states: random states of the fixed probe set the diagnostics use.
    """

    algorithm_name = "SEQUOIA"
    # Arm states and binary action vectors (:meth:`_check_spaces`).
    observation_space: gym.spaces.MultiDiscrete
    action_space: gym.spaces.MultiBinary
    default_search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
        "target_update_interval": {"type": "categorical", "choices": [50, 100, 300, 1000]},
        "gamma": {"type": "categorical", "choices": [0.9, 0.95, 0.99]},
        "replay": {"type": "categorical", "choices": list(REPLAY_MODES)},
    }

    def __init__(
        self,
        policy: str = "MlpPolicy",
        env: GymEnv | None = None,
        *,
        net_arch: tuple[int, ...] = (16, 32),
        dueling: bool = False,
        learning_rate: float = 1e-3,
        adam_eps: float = 1.5e-4,
        lr_decay: float = 1.0,
        batch_size: int = 32,
        buffer_size: int = 10_000,
        gamma: float = 0.99,
        double_q: bool = False,
        reward_centering: float = 0.01,
        gradient_steps: int = 1,
        learning_starts: int = 0,
        max_grad_value: float = 5.0,
        target_update_interval: int = 300,
        tau: float = 1.0,
        replay: str = "prioritized",
        per_alpha: float = 0.6,
        per_beta: float = 0.4,
        exploration_initial_eps: float = 0.9,
        exploration_final_eps: float = 0.05,
        exploration_decay: float = 1000.0,
        exploration_duration_exponent: float | None = None,
        use_expected_reward: bool = True,
        warm_start: bool = True,
        warm_start_epochs: int = 50,
        warm_start_batch_size: int = 32,
        warm_start_lr_decay: float = 0.9,
        warm_start_random_states: int | None = None,
        warm_start_random_actions: int = 10,
        warm_start_replay_fraction: float = 0.1,
        warm_start_anchor: float = 0.0,
        target_maximizer: str = "fast",
        target_check_interval: int = 100,
        fast_target_kwargs: dict[str, int] | None = None,
        relaxed_targets: bool = False,
        solver: str = "highs",
        solver_method: str = "auto",
        enumeration_limit: int = 500_000,
        time_limit: float | None = 5.0,
        target_time_limit: float | None = 2.0,
        abs_gap: float | None = None,
        diagnostic_interval: int = 500,
        n_probe_states: int = 200,
        seed: int | None = None,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        final_eval_episodes: int = 10,
    ) -> None:
        self.policy = check_policy(policy, ("MlpPolicy",))
        self.net_arch = check_int_tuple("net_arch", net_arch)
        self.dueling = check_bool("dueling", dueling)
        self.learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
        self.adam_eps = check_float("adam_eps", adam_eps, low=0.0, low_inclusive=False)
        self.lr_decay = check_float("lr_decay", lr_decay, low=0.0, high=1.0, low_inclusive=False)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self.gamma = check_float("gamma", gamma, low=0.0, high=1.0)
        self.double_q = check_bool("double_q", double_q)
        self.reward_centering = check_float("reward_centering", reward_centering, low=0.0, high=1.0)
        self.gradient_steps = check_int("gradient_steps", gradient_steps, minimum=0)
        self.learning_starts = check_int("learning_starts", learning_starts, minimum=0)
        self.max_grad_value = check_float("max_grad_value", max_grad_value, low=0.0, low_inclusive=False)
        self.target_update_interval = check_int("target_update_interval", target_update_interval, minimum=1)
        self.tau = check_float("tau", tau, low=0.0, high=1.0, low_inclusive=False)
        self.replay = check_choice("replay", replay, REPLAY_MODES)
        self.per_alpha = check_float("per_alpha", per_alpha, low=0.0)
        self.per_beta = check_float("per_beta", per_beta, low=0.0)
        self.exploration_initial_eps = check_float("exploration_initial_eps", exploration_initial_eps, low=0.0,
                                                   high=1.0)
        self.exploration_final_eps = check_float("exploration_final_eps", exploration_final_eps, low=0.0, high=1.0)
        self.exploration_decay = check_float("exploration_decay", exploration_decay, low=0.0, low_inclusive=False)
        self._behaviour = ExtendedEpsilonGreedy(exploration_duration_exponent, name="exploration_duration_exponent")
        self.exploration_duration_exponent = self._behaviour.duration_exponent
        self.use_expected_reward = check_bool("use_expected_reward", use_expected_reward)
        self.warm_start = check_bool("warm_start", warm_start)
        self.warm_start_epochs = check_int("warm_start_epochs", warm_start_epochs, minimum=0)
        self.warm_start_batch_size = check_int("warm_start_batch_size", warm_start_batch_size, minimum=1)
        self.warm_start_lr_decay = check_float("warm_start_lr_decay", warm_start_lr_decay, low=0.0, high=1.0,
                                               low_inclusive=False)
        self.warm_start_random_states = None if warm_start_random_states is None else check_int(
            "warm_start_random_states", warm_start_random_states, minimum=0)
        self.warm_start_random_actions = check_int("warm_start_random_actions", warm_start_random_actions, minimum=0)
        self.warm_start_replay_fraction = check_float("warm_start_replay_fraction", warm_start_replay_fraction,
                                                      low=0.0, high=1.0)
        self.warm_start_anchor = check_float("warm_start_anchor", warm_start_anchor, low=0.0)
        self.target_maximizer = check_choice("target_maximizer", target_maximizer, TARGET_MODES)
        if self.double_q and self.target_maximizer != "fast":
            raise ConfigError(f"double_q=True selects target actions with the fast maximiser; it needs "
                              f"target_maximizer='fast', got {self.target_maximizer!r}")
        self.target_check_interval = check_int("target_check_interval", target_check_interval, minimum=0)
        self._fast_options = fast_options(fast_target_kwargs, name="fast_target_kwargs")
        self.fast_target_kwargs = None if fast_target_kwargs is None else dict(fast_target_kwargs)
        self.relaxed_targets = check_bool("relaxed_targets", relaxed_targets)
        if not isinstance(solver, str):
            raise ConfigError(f"solver must be a backend name (a checkpoint stores it as JSON), got {solver!r}")
        get_solver(solver)  # raises ConfigError naming the valid backends
        self.solver = solver
        self.solver_method = check_choice("solver_method", solver_method, METHODS)
        self.enumeration_limit = check_int("enumeration_limit", enumeration_limit, minimum=1)
        self.time_limit = _optional_positive("time_limit", time_limit)
        self.target_time_limit = _optional_positive("target_time_limit", target_time_limit)
        self.abs_gap = None if abs_gap is None else check_float("abs_gap", abs_gap, low=0.0)
        self.diagnostic_interval = check_int("diagnostic_interval", diagnostic_interval, minimum=0)
        self.n_probe_states = check_int("n_probe_states", n_probe_states, minimum=1)
        self.problem: CoRMABProblem | None = None
        super().__init__(
            seed=seed,
            device=device,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            final_eval_episodes=final_eval_episodes,
        )
        self._initialize(env)

    # ------------------------------------------------------------------ set-up
    def _check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        if not isinstance(observation_space, gym.spaces.MultiDiscrete) or observation_space.nvec.ndim != 1:
            raise EnvError(f"SEQUOIA needs arm-state observations (a 1-D MultiDiscrete), got {observation_space}")
        if not isinstance(action_space, gym.spaces.MultiBinary) or len(action_space.shape) != 1:
            raise EnvError(f"SEQUOIA needs binary action vectors (a 1-D MultiBinary), got {action_space}")

    def _attach_env(self, env: GymEnv, n_envs: int) -> None:
        super()._attach_env(env, n_envs)
        if not isinstance(self.env, DummyVecEnv) or self.env.num_envs != 1:
            raise EnvError("SEQUOIA steps one env: pass a coRMAB env, its id, or a DummyVecEnv holding one")
        problem = problem_of(self.env.envs[0])
        if problem.n_arms != self.observation_space.shape[0] or problem.n_actions != self.action_space.shape[0]:
            raise EnvError(f"the env's problem has J={problem.n_arms}, N={problem.n_actions}, which does not match "
                           f"its spaces {self.observation_space}, {self.action_space}")
        self.problem = problem
        if hasattr(self, "q_net"):
            self._build_solvers()

    @property
    def n_arms(self) -> int:
        return int(self.observation_space.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.action_space.shape[0])

    def _setup_model(self) -> None:
        self.q_net = q_network(self.n_actions, self.n_arms, self.net_arch, self.dueling).to(self.device)
        self.target_net = copy.deepcopy(self.q_net)
        self.target_net.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.q_net.parameters(), lr=self.learning_rate, eps=self.adam_eps,
                                           amsgrad=True)
        self.replay_memory = ReplayMemory(self.buffer_size, self.n_arms, self.n_actions, mode=self.replay,
                                          alpha=self.per_alpha, beta=self.per_beta)
        keys = (_ACTION_RNG_KEY, _BATCH_RNG_KEY, _TARGET_RNG_KEY, _WARM_RNG_KEY)
        self._rngs = {name: np.random.default_rng(spawn_seeds(self.seed, 1, key=key)[0])
                      for name, key in zip(_RNG_NAMES, keys, strict=True)}
        self._warm_started = False
        self._warm_start_losses: list[float] = []
        self._episodes_finished = 0
        self._reward_rate: float | None = None
        self._warm_net: nn.Module | None = None
        self._target_stats = TargetStatistics()
        self._memo_arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._acting_times: deque[float] = deque(maxlen=1000)
        self._losses: list[float] = []
        self._td_errors: list[float] = []
        if self.problem is not None:
            self._build_solvers()

    def _build_solvers(self) -> None:
        """(Re)build the acting solver and the target maximiser for the attached problem."""
        solver_seed = spawn_seeds(self.seed, 1, key=_SOLVER_SEED_KEY)[0]
        common = {"solver": self.solver, "abs_gap": self.abs_gap, "method": self.solver_method,
                  "enumeration_limit": self.enumeration_limit, "seed": solver_seed}
        self._acting_solver = ArgmaxSolver(argmax_network(self.q_net), self.problem, time_limit=self.time_limit,
                                           **common)
        exact = ArgmaxSolver(argmax_network(self.target_net), self.problem, relaxed=self.relaxed_targets,
                             time_limit=self.target_time_limit, **common)
        previous = getattr(self, "_targets", None)
        self._targets = TargetMaximizer(exact.feasible_set, exact, self.target_maximizer, self._fast_options,
                                        match_tolerance=exact.options.abs_gap)
        self._targets.stats = self._target_stats
        if self._memo_arrays is not None:
            self._targets.load_memo(*self._memo_arrays)
        elif previous is not None and previous.feasible_set is exact.feasible_set:
            self._targets.memo = previous.memo  # same instance (e.g. set_env with the same env): answers still hold
        self._memo_arrays = None
        self._acting_synced = False

    def _require_problem(self) -> CoRMABProblem:
        if self.problem is None:
            raise EnvError("SEQUOIA acts through its env's feasible set: pass env= to the constructor or load(), "
                           "or call set_env()")
        return self.problem

    def _stepped_env(self) -> gym.Env:
        """The one env SEQUOIA steps (:meth:`_attach_env` accepts only a one-env ``DummyVecEnv``)."""
        if not isinstance(self.env, DummyVecEnv):
            raise EnvError("this model has no env: pass env= to the constructor or load(), or call set_env()")
        return self.env.envs[0]

    # ------------------------------------------------------------------ acting
    @property
    def exploration_rate(self) -> float:
        """Epsilon at the current step: final + (initial - final) exp(-t / decay) (the reference's schedule)."""
        return self.exploration_final_eps + (self.exploration_initial_eps - self.exploration_final_eps) * math.exp(
            -self.num_timesteps / self.exploration_decay)

    def greedy_action(self, state: np.ndarray) -> np.ndarray:
        """The exact ``argmax_{a in A} Q([a, state])`` over the full feasible set (int8 vector of length N).

        A MILP that fails or stops without a solution falls back to the best of 100 random feasible actions with
        a :class:`~cairnrl.mip.SolverFallbackWarning`; the action is always feasible.
        """
        self._require_problem()
        if not self._acting_synced:
            self._acting_solver.update_network(argmax_network(self.q_net))
            self._acting_synced = True
        result = self._acting_solver.solve(np.asarray(state, dtype=np.float64))
        if not result.cached:
            self._acting_times.append(result.total_time)
        return result.action.astype(np.int8)

    @staticmethod
    def _check_observation(observation: np.ndarray) -> None:
        if not np.all((observation >= 0) & (observation < N_STATES) & (observation == np.round(observation))):
            raise EnvError(f"observations must be arm states in 0..{N_STATES - 1}")

    def _predict(
        self, observation: np.ndarray, state: np.ndarray | None, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, None]:
        problem = self._require_problem()
        self._check_observation(observation)
        actions = np.empty((observation.shape[0], self.n_actions), dtype=np.int8)
        for row, obs in enumerate(observation.astype(np.int64)):
            if not deterministic and self._rngs["action"].random() < self.exploration_rate:
                actions[row] = problem.sample_feasible(1, self._rngs["action"])[0]
            else:
                actions[row] = self.greedy_action(obs)
        return actions, None

    def _behaviour_action(self, observation: np.ndarray) -> np.ndarray:
        """The training action: temporally-extended epsilon-greedy over random feasible actions (one-step with
        ``exploration_duration_exponent=None``, the same draws as a stochastic :meth:`predict`)."""
        problem = self._require_problem()
        self._check_observation(observation[None])
        return self._behaviour.act(self._rngs["action"], self.exploration_rate,
                                   greedy=lambda: self.greedy_action(observation.astype(np.int64)),
                                   random_action=lambda rng: problem.sample_feasible(1, rng)[0])

    # ------------------------------------------------------------------ warm start (the released pre-training)
    def _run_warm_start(self) -> None:
        problem = self._require_problem()
        rng = self._rngs["warm"]
        horizon = getattr(self._stepped_env().unwrapped, "horizon", 20)
        n_random = 50 * horizon if self.warm_start_random_states is None else self.warm_start_random_states
        data = warm_start_dataset(problem, n_random, self.warm_start_random_actions, rng)
        # The warm start is its own phase on screen; the step bar starts after it (see ProgressBar).
        with tqdm(total=self.warm_start_epochs, desc="warm start (myopic fit)", unit="epoch", dynamic_ncols=True,
                  disable=not self._show_progress) as bar:

            def epoch_done(loss: float) -> None:
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                bar.update()

            self._warm_start_losses = fit_myopic(
                self.q_net, data, epochs=self.warm_start_epochs, batch_size=self.warm_start_batch_size,
                learning_rate=self.learning_rate, adam_eps=self.adam_eps, lr_decay=self.warm_start_lr_decay, rng=rng,
                on_epoch=epoch_done,
            )
        self.target_net.load_state_dict(self.q_net.state_dict())
        if self.warm_start_anchor:
            self._warm_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self._on_target_changed()
        self._acting_synced = False
        n_seed = min(int(self.warm_start_replay_fraction * self.buffer_size), len(data))
        chosen = rng.choice(len(data), size=n_seed, replace=False)
        self.replay_memory.add(data.obs[chosen], data.actions[chosen], data.next_obs[chosen],
                               data.rewards[chosen], np.zeros(n_seed, dtype=np.float32))
        self._warm_started = True
        if self._warm_start_losses:
            self.logger.record("warm_start/final_loss", self._warm_start_losses[-1])
        self.logger.record("warm_start/transitions", len(data))

    # ------------------------------------------------------------------ training (Algorithm 1, DQN loop)
    def _on_target_changed(self) -> None:
        self._targets.exact_solver.update_network(argmax_network(self.target_net))
        if self.tau == 1.0:
            self._targets.clear()

    def _update_target(self) -> None:
        if self.tau == 1.0:
            self.target_net.load_state_dict(self.q_net.state_dict())
        else:
            with torch.no_grad():
                for target, online in zip(self.target_net.parameters(), self.q_net.parameters(), strict=True):
                    target.lerp_(online, self.tau)
        self._on_target_changed()

    def _train_step(self) -> None:
        indices, batch, weights = self.replay_memory.sample(self.batch_size, self._rngs["batch"])
        check = self.target_check_interval > 0 and self._n_updates % self.target_check_interval == 0
        if self.double_q:
            next_actions = self._targets.select(argmax_network(self.q_net), batch["next_obs"], self._rngs["target"])
        else:
            next_actions = self._targets.argmax(argmax_network(self.target_net), batch["next_obs"],
                                                self._rngs["target"], check)
        as_tensor = lambda array: torch.as_tensor(array, dtype=torch.float32, device=self.device)  # noqa: E731
        rewards = as_tensor(batch["reward"])
        if self.reward_centering:
            batch_mean = float(batch["reward"].mean())
            if self._reward_rate is None:
                self._reward_rate = batch_mean
            self._reward_rate += self.reward_centering * (batch_mean - self._reward_rate)
            rewards = rewards - self._reward_rate
        targets = td_targets(self.target_net, rewards, as_tensor(batch["done"]), as_tensor(next_actions),
                             as_tensor(batch["next_obs"]), self.gamma)
        inputs = as_tensor(np.concatenate([batch["action"], batch["obs"]], axis=1))
        q_taken = self.q_net(inputs)[:, 0]
        losses = nn.functional.smooth_l1_loss(q_taken, targets, reduction="none")
        loss = (as_tensor(weights) * losses).mean()
        if self.warm_start_anchor and self._warm_net is not None:
            loss = loss + self.warm_start_anchor * self._anchor_loss(self._warm_net, inputs, q_taken, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_value_(self.q_net.parameters(), self.max_grad_value)
        self.optimizer.step()
        self.replay_memory.update_priorities(indices, (targets - q_taken).detach().cpu().numpy())
        self._n_updates += 1
        self._acting_synced = False
        self._losses.append(float(loss.detach()))
        self._td_errors.append(float((targets - q_taken).abs().mean().detach()))
        if check and self._targets.last_check is not None:
            for key, value in self._targets.last_check.items():
                self.logger.record(f"targets/check_{key}", value)

    def _anchor_loss(
        self, warm_net: nn.Module, inputs: torch.Tensor, q_taken: torch.Tensor, batch: dict[str, np.ndarray]
    ) -> torch.Tensor:
        """Squared gap between Q's and the warm-start network's difference between the taken action and another
        replayed action, in the same state (the batch's actions permuted)."""
        permutation = self._rngs["batch"].permutation(batch["action"].shape[0])
        other = torch.as_tensor(np.concatenate([batch["action"][permutation], batch["obs"]], axis=1),
                                dtype=inputs.dtype, device=self.device)
        with torch.no_grad():
            myopic_gap = warm_net(inputs)[:, 0] - warm_net(other)[:, 0]
        return nn.functional.mse_loss(q_taken - self.q_net(other)[:, 0], myopic_gap)

    def _learn(self, callback: BaseCallback, log_interval: int) -> None:
        self._require_problem()
        if self.warm_start and not self._warm_started:
            self._run_warm_start()
        env = self._stepped_env()
        while self.num_timesteps < self._total_timesteps:
            seed = spawn_seeds(self.seed, 1, key=(_EPISODE_SEED_KEY, self._episodes_finished))[0]
            observation, _ = env.reset(seed=seed)
            self._behaviour.reset()
            callback.on_rollout_start()
            episode_return, episode_length, done = 0.0, 0, False
            while not done:
                action = self._behaviour_action(observation)
                new_obs, reward, terminated, truncated, info = env.step(action)
                signal = float(info["expected_reward"]) if self.use_expected_reward else float(reward)
                if not math.isfinite(signal):
                    raise EnvError(f"env {self.env_id!r} returned a non-finite reward {signal!r}")
                self.replay_memory.add(observation[None], action[None], new_obs[None],
                                       np.array([signal], dtype=np.float32), np.array([float(terminated)]))
                self.num_timesteps += 1
                episode_return += float(reward)
                episode_length += 1
                done = terminated or truncated
                rewards, dones, infos = np.array([reward]), np.array([done]), [info]  # SB3 callbacks read these locals
                callback.update_locals(locals())
                if not callback.on_step():
                    return
                if self.num_timesteps > self.learning_starts and len(self.replay_memory) >= self.batch_size:
                    for _ in range(self.gradient_steps):
                        self._train_step()
                if self.num_timesteps % self.target_update_interval == 0:
                    self._update_target()
                observation = new_obs
            callback.on_rollout_end()
            self._end_episode(episode_return, episode_length, log_interval)

    def _end_episode(self, episode_return: float, episode_length: int, log_interval: int) -> None:
        self._episodes_finished += 1
        self._record_episode(episode_return, episode_length)
        for group in self.optimizer.param_groups:
            group["lr"] *= self.lr_decay
        if self.tau < 1.0:
            self._targets.clear()
        stats, counts = self._target_stats, self._acting_solver.counts
        if self._losses:
            self.logger.record("train/loss", float(np.mean(self._losses)))
            self.logger.record("train/td_error", float(np.mean(self._td_errors)))
        if self._reward_rate is not None:
            self.logger.record("train/reward_rate", self._reward_rate)
            self._losses, self._td_errors = [], []
        if self.diagnostic_interval and self.num_timesteps // self.diagnostic_interval > (
                self.num_timesteps - episode_length) // self.diagnostic_interval:
            for key, value in self.greedy_diagnostics().items():
                self.logger.record(f"diagnostics/{key}", value)
        self.logger.record("train/learning_rate", self.optimizer.param_groups[0]["lr"])
        self.logger.record("rollout/exploration_rate", self.exploration_rate)
        self.logger.record("targets/memo_hit_rate", stats.memo_hits / max(stats.lookups, 1))
        self.logger.record("targets/fast_solves", stats.fast_solves)
        self.logger.record("targets/exact_solves", stats.exact_solves)
        if stats.checked:
            self.logger.record("targets/match_rate", stats.match_rate)
            self.logger.record("targets/mean_gap", stats.mean_gap)
        self.logger.record("solver/acting_solves", counts["solves"])
        self.logger.record("solver/acting_capped_fraction", counts["time_limit"] / max(counts["solves"], 1))
        self.logger.record("solver/acting_fallbacks", counts["fallback"])
        if self._acting_times:
            self.logger.record("solver/acting_median_s", float(np.median(self._acting_times)))
        if self._episodes_finished % log_interval == 0:
            self._dump_logs()

    def probe_states(self) -> np.ndarray:
        """The fixed probe states of :meth:`greedy_diagnostics`: ``n_probe_states`` uniform states in {0..3}^J drawn
        from the seed alone (the same set all through training and after ``load``)."""
        rng = np.random.default_rng(spawn_seeds(self.seed, 1, key=_PROBE_KEY)[0])
        return rng.integers(0, N_STATES, size=(self.n_probe_states, self.n_arms)).astype(np.int8)

    def greedy_diagnostics(self) -> dict[str, float]:
        """Whether the learned Q ranks actions by state, on the fixed :meth:`probe_states`.

        * ``distinct_greedy_actions``: number of different greedy actions over the probe states (1 means the policy
          is one constant action);
        * ``q_mean``: mean Q over the probe states and random feasible actions (its scale against the per-step
          reward shows how far the values have grown);
        * ``q_action_spread``: mean over probe states of the Q range across those actions (how much the action
          matters to the network), and ``q_state_spread``: the standard deviation over states of the per-state mean
          Q (how much the state matters).

        The greedy actions come from the batched sampling + local-search maximiser (:func:`fast_argmax`, the target
        maximiser) with a generator fixed by the seed, so training's random streams are not touched.
        """
        problem = self._require_problem()
        states = self.probe_states()
        rng = np.random.default_rng(spawn_seeds(self.seed, 1, key=(_PROBE_KEY, 1))[0])
        greedy = fast_argmax(argmax_network(self.q_net), states, problem.feasible_set(), rng, **self._fast_options)[0]
        n_random = 32
        actions = problem.sample_feasible(states.shape[0] * n_random, rng)
        values = q_values(self.q_net, actions, np.repeat(states, n_random, axis=0)).reshape(-1, n_random)
        distinct = np.unique(greedy, axis=0).shape[0]
        return {"distinct_greedy_actions": float(distinct), "q_mean": float(values.mean()),
                "q_action_spread": float((values.max(axis=1) - values.min(axis=1)).mean()),
                "q_state_spread": float(values.mean(axis=1).std())}

    def statistics(self) -> dict[str, Any]:
        """Solver and target-maximiser counters: acting solves, capped and fallback solves, their median time,
        the fast maximiser's match rate and mean gap against the exact solver, memo hits."""
        stats = self._target_stats
        counts = dict(self._acting_solver.counts) if self.problem is not None else {}
        return {
            "acting": {**counts, "median_time_s": float(np.median(self._acting_times)) if self._acting_times else None},
            "targets": {**stats.to_dict(), "match_rate": stats.match_rate, "mean_gap": stats.mean_gap},
            "warm_start_final_loss": self._warm_start_losses[-1] if self._warm_start_losses else None,
        }

    def set_parameters(self, parameters: dict[str, dict[str, torch.Tensor]], exact_match: bool = True) -> None:
        super().set_parameters(parameters, exact_match)
        self._acting_synced = False
        if self.problem is not None:
            self._on_target_changed()

    def evaluate_final(self) -> EvaluationResult:
        """Deterministic evaluation on a fresh copy of the training env (rebuilt from its spec and keyword
        arguments, so the same coRMAB instance), seeded apart from training."""
        spec = self.env.envs[0].spec if isinstance(self.env, DummyVecEnv) else None
        if spec is None:
            return super().evaluate_final()
        eval_env = gym.make(spec)
        try:
            return evaluate(self, eval_env, n_episodes=max(self.final_eval_episodes, 1),
                            seed=final_evaluation_seed(self.seed))
        finally:
            eval_env.close()

    # ------------------------------------------------------------------ checkpoint state
    def _get_state(self) -> tuple[dict[str, Any], ckpt.TensorGroups]:
        optimizer_tensors, optimizer_meta = ckpt.optimizer_state(self.optimizer)
        replay_tensors, replay_meta = self.replay_memory.state()
        if self.problem is not None:
            memo_states, memo_actions = self._targets.memo_arrays(self.n_arms)
        elif self._memo_arrays is not None:
            memo_states, memo_actions = self._memo_arrays
        else:
            memo_states = np.zeros((0, self.n_arms), dtype=np.int8)
            memo_actions = np.zeros((0, self.n_actions), dtype=np.int8)
        state = {
            "optimizer": optimizer_meta,
            "replay": replay_meta,
            "warm_started": self._warm_started,
            "warm_start_losses": self._warm_start_losses,
            "episodes_finished": self._episodes_finished,
            "reward_rate": self._reward_rate,
            "has_warm_net": self._warm_net is not None,
            "target_stats": self._target_stats.to_dict(),
            "rngs": {name: generator_state(rng) for name, rng in self._rngs.items()},
        }
        groups = {
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": optimizer_tensors,
            "replay": replay_tensors,
            **({"warm_net": self._warm_net.state_dict()} if self._warm_net is not None else {}),
            "memo": {"states": torch.from_numpy(memo_states), "actions": torch.from_numpy(memo_actions)},
        }
        return state, groups

    def _set_state(self, state: dict[str, Any], groups: ckpt.TensorGroups) -> None:
        self.q_net.load_state_dict(groups["q_net"])
        self.target_net.load_state_dict(groups["target_net"])
        ckpt.load_optimizer_state(self.optimizer, groups["optimizer"], state["optimizer"])
        self.replay_memory.load_state(groups["replay"], state["replay"])
        self._warm_started = bool(state["warm_started"])
        self._warm_start_losses = [float(value) for value in state["warm_start_losses"]]
        self._episodes_finished = int(state["episodes_finished"])
        self._reward_rate = None if state["reward_rate"] is None else float(state["reward_rate"])
        self._warm_net = None
        if state["has_warm_net"]:
            self._warm_net = copy.deepcopy(self.q_net).requires_grad_(False)
            self._warm_net.load_state_dict(groups["warm_net"])
        self._target_stats = TargetStatistics(**state["target_stats"])
        self._rngs = {name: restore_generator(state["rngs"][name]) for name in _RNG_NAMES}
        memo = groups["memo"]
        self._memo_arrays = (memo["states"].numpy(), memo["actions"].numpy())
        if self.problem is not None:
            self._build_solvers()
