"""``cairnrl.hpo.tune``: tune on tuning seeds, report on unseen test seeds.

Protocol (Eimer, Lindauer and Raileanu, ICML 2023):

1. validate everything before training: seeds (tuning and test disjoint, including derived seeds, see
   :mod:`cairnrl.hpo.seeds`), the search space (format, names, and a probe construction of every range end and
   choice, see :func:`cairnrl.hpo.spaces.probe`), the env;
2. optimise: each trial trains the sampled configuration once per tuning seed and its value is the mean (or
   IQM) of the final per-seed scores, with intermediate evaluations reported so a pruner can stop bad trials
   (:class:`cairnrl.hpo.study.Objective`); workers share the study through its storage;
3. final phase: retrain the ``top_k`` best configurations and the defaults on the test seeds and report only
   those numbers (:mod:`cairnrl.hpo.results`), then write the report folder (:mod:`cairnrl.hpo.report`).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from cairnrl.algos.registry import Algorithm, get_algorithm, is_offline, is_sb3
from cairnrl.core.fileio import is_json_value
from cairnrl.core.make import make
from cairnrl.core.seeding import check_seed
from cairnrl.core.validation import check_choice, check_int
from cairnrl.exceptions import CairnError, ConfigError, DatasetError, EnvError
from cairnrl.hpo import spaces
from cairnrl.hpo.results import TuneResult, final_phase
from cairnrl.hpo.seeds import check_seed_overlap, parse_seeds
from cairnrl.hpo.storage import StorageSpec, retry_dead_local_trials, worker_tag
from cairnrl.hpo.study import (
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    STUDY_ATTR,
    TRIALS_ATTR,
    Objective,
    StudySettings,
    algorithm_name,
    counted_trials,
    default_study_name,
    resolve_algorithm,
)

DEFAULT_RUN_ROOT = Path("runs") / "hpo"
JOURNAL_NAME = "study.journal"


@dataclass(frozen=True)
class OpenStudy:
    """A loaded study with the storage object and address it came from and its recorded protocol."""

    study: optuna.Study
    storage: BaseStorage
    spec: StorageSpec
    settings: StudySettings


def _check_env(env: Any) -> str:
    if not isinstance(env, str):
        raise EnvError(f"env must be a registered env id (cairnrl/... or a Gymnasium id), got {type(env).__name__}")
    make(env).close()
    return env


def _search_space(algorithm: Algorithm, search_space: Any, policy: str) -> spaces.SearchSpace:
    raw = spaces.default_search_space(algorithm) if search_space is None else spaces.load_search_space(search_space)
    return spaces.validate_search_space(algorithm, raw, policy)


def _fixed(algorithm: Algorithm, fixed: Mapping[str, Any] | None, space: spaces.SearchSpace) -> dict[str, Any]:
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping):
        raise ConfigError(f"fixed must be a mapping of hyperparameter -> value, got {fixed!r}")
    fixed = dict(fixed)
    for name, value in fixed.items():
        if not is_json_value(value):
            raise ConfigError(f"fixed hyperparameter {name}={value!r} is not a JSON value, so it cannot be recorded "
                              "in the study or in best_config.json")
    spaces.check_names(algorithm, list(fixed), "fixed hyperparameter", fixed.get("policy", "MlpPolicy"))
    both = sorted(set(fixed) & set(space))
    if both:
        raise ConfigError(f"{both} are both fixed and in the search space; remove them from one of the two")
    return fixed


def _check_dataset(algorithm: Algorithm, dataset: str | Path | None) -> str | None:
    """The absolute dataset path for an offline algorithm (checked to load), ``None`` for an online one."""
    if not is_offline(algorithm):
        if dataset is not None:
            raise ConfigError(f"{algorithm.__name__} learns online; dataset= is only for offline algorithms")
        return None
    if dataset is None:
        raise ConfigError(f"{algorithm.__name__} learns offline: pass dataset= (a dataset file or folder)")
    path = Path(dataset).resolve()
    if not path.exists():
        raise DatasetError(f"no dataset at {str(dataset)!r}")
    return str(path)


def build_settings(
    algo: str | Algorithm,
    env: str,
    *,
    dataset: str | Path | None = None,
    search_space: Mapping[str, Any] | str | Path | None,
    tuning_seeds: Iterable[int] | str,
    test_seeds: Iterable[int] | str,
    budget: int,
    eval_episodes: int,
    n_evaluations: int,
    objective: str,
    sampler: str,
    pruner: str,
    n_startup_trials: int,
    sampler_seed: int,
    fixed: Mapping[str, Any] | None,
) -> StudySettings:
    """Validate every input of :func:`tune` (no training) and return the study's protocol."""
    algorithm = get_algorithm(algo)
    check_int("budget", budget, minimum=1)
    check_int("eval_episodes", eval_episodes, minimum=1)
    check_int("n_evaluations", n_evaluations, minimum=1, maximum=budget)
    check_int("n_startup_trials", n_startup_trials, minimum=0)
    check_seed(sampler_seed, "sampler_seed")
    check_choice("objective", objective, OBJECTIVES)
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("pruner", pruner, PRUNERS)
    tuning = parse_seeds(tuning_seeds, "tuning_seeds")
    test = parse_seeds(test_seeds, "test_seeds")
    check_seed_overlap(tuning, test, sb3=is_sb3(algorithm), eval_episodes=eval_episodes)
    env = _check_env(env)
    dataset_path = _check_dataset(algorithm, dataset)
    policy = dict(fixed or {}).get("policy", "MlpPolicy")
    space = _search_space(algorithm, search_space, policy)
    fixed_values = _fixed(algorithm, fixed, space)
    spaces.probe(algorithm, env, fixed_values, space, dataset=dataset_path)
    return StudySettings(
        algorithm=algorithm_name(algorithm), env=env, dataset=dataset_path, budget=budget, tuning_seeds=tuning,
        test_seeds=test,
        eval_episodes=eval_episodes, n_evaluations=n_evaluations, objective=objective, search_space=space,
        fixed=fixed_values, sampler=sampler, pruner=pruner, n_startup_trials=n_startup_trials,
        sampler_seed=sampler_seed,
    )


def _open_study(spec: StorageSpec, study_name: str, settings: StudySettings | None, worker: int) -> OpenStudy:
    """Create or load the study; with ``settings``, record them (new study) or check they match (existing);
    without, load an existing study's recorded settings."""
    if settings is None and spec.is_journal and not Path(spec.url).is_file():
        raise ConfigError(f"no study {study_name!r}: the journal file {spec.url} does not exist")
    storage = spec.open()
    if settings is None:
        try:
            names = sorted(optuna.get_all_study_names(storage))
        except Exception as error:
            raise ConfigError(f"cannot read studies from {spec.display()}: {error}") from error
        if study_name not in names:
            raise ConfigError(f"no study {study_name!r} in {spec.display()}; studies there: {names}")
        recorded = optuna.load_study(study_name=study_name, storage=storage).user_attrs.get(STUDY_ATTR)
        settings = StudySettings.from_json(recorded, f"study {study_name!r}")
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=settings.make_sampler(worker), pruner=settings.make_pruner(),
    )
    recorded = study.user_attrs.get(STUDY_ATTR)
    if recorded is None:
        study.set_user_attr(STUDY_ATTR, settings.to_json())
    else:
        differences = settings.differences(StudySettings.from_json(recorded, f"study {study_name!r}"))
        if differences:
            raise ConfigError(
                f"study {study_name!r} in {spec.display()} was created with different {differences}; "
                "use another study name (or the recorded settings to resume it)"
            )
    return OpenStudy(study, storage, spec, settings)


def _encode_enqueue(settings: StudySettings, configurations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check user configurations against the search space and encode them for Optuna."""
    encoded = []
    for configuration in configurations:
        if not isinstance(configuration, Mapping):
            raise ConfigError(f"enqueue must hold mappings of search-space parameter -> value, got {configuration!r}")
        encoded.append(spaces.encode_params(settings.search_space, dict(configuration)))
        for name, value in configuration.items():
            if not spaces.contains(settings.search_space[name], value):
                raise ConfigError(f"enqueued {name}={value!r} lies outside its search space "
                                  f"{settings.search_space[name]}")
    return encoded


def _prepare(opened: OpenStudy, n_trials: int, enqueue: list[dict[str, Any]]) -> None:
    """Set the study's trial budget; queue ``enqueue`` once, when the study has no trial yet (so a resumed
    study does not queue them again)."""
    if enqueue and not opened.study.get_trials(deepcopy=False):
        for params in enqueue:
            opened.study.enqueue_trial(params, user_attrs={"enqueued": True})
    opened.study.set_user_attr(TRIALS_ATTR, n_trials)


def create_study(
    settings: StudySettings,
    storage: str | Path,
    study_name: str,
    *,
    n_trials: int,
    enqueue: Sequence[Mapping[str, Any]] = (),
) -> optuna.Study:
    """Create (or check and extend) a study with the protocol ``settings`` (from :func:`build_settings`)
    without running trials, so that workers can :func:`join` it, e.g. on several machines."""
    check_int("n_trials", n_trials, minimum=1)
    encoded = _encode_enqueue(settings, enqueue)
    opened = _open_study(StorageSpec(str(storage)), study_name, settings, 0)
    _prepare(opened, n_trials, encoded)
    return opened.study


def _running_to_wait_for(opened: OpenStudy) -> list[int]:
    """RUNNING trials whose outcome this worker waits for: all with heartbeats (RDB), this host's with a journal
    file (their worker's process can be checked; trials of other hosts cannot, and are not waited for)."""
    running = opened.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not opened.spec.is_journal:
        return [trial.number for trial in running]
    host = socket.gethostname()
    return [t.number for t in running if str(t.user_attrs.get("worker", "")).startswith(f"{host}:")]


def _recover_stale(opened: OpenStudy) -> None:
    """Fail and re-queue trials whose worker died (journal: dead local process; RDB: stale heartbeat)."""
    if opened.spec.is_journal:
        retry_dead_local_trials(opened.study, opened.storage)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(opened.study)


class TrialProgress:
    """A tqdm bar over the study's trials (all workers): finished out of the budget, with the best tuning score."""

    def __init__(self, study: optuna.Study) -> None:
        from tqdm.auto import tqdm

        self.study = study
        self.bar = tqdm(total=int(study.user_attrs.get(TRIALS_ATTR, 0)), unit="trial", desc="trials",
                        dynamic_ncols=True)

    def update(self) -> None:
        """Refresh from the storage (cheap: called between trials)."""
        self.bar.total = int(self.study.user_attrs.get(TRIALS_ATTR, 0))
        self.bar.n = min(counted_trials(self.study), self.bar.total)
        completed = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if completed:
            self.bar.set_postfix(best=f"{max(cast(float, trial.value) for trial in completed):.4g}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.update()
        self.bar.close()


def _work(opened: OpenStudy, worker: int, poll: Callable[[], object] = lambda: None, poll_seconds: float = 1.0,
          progress: TrialProgress | None = None) -> int:
    """Run trials until the study's budget is used, then wait for the running trials of other workers (retrying
    those whose worker died). ``poll`` runs before every check (it reaps local child processes, so a killed
    child is seen as dead). Returns how many trials this worker ran."""
    study, settings = opened.study, opened.settings
    objective = Objective(settings, settings.algorithm_class, worker_tag(worker))
    ran = 0
    while True:
        poll()
        _recover_stale(opened)
        if progress is not None:
            progress.update()
        target = int(study.user_attrs.get(TRIALS_ATTR, 0))
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if counted_trials(study) < target or waiting:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, n_trials=1, catch=(Exception,))
            ran += 1
        elif _running_to_wait_for(opened):
            time.sleep(poll_seconds)
        else:
            return ran


def _spawn_workers(spec: StorageSpec, study_name: str, workers: Sequence[int]) -> list[subprocess.Popen]:
    command = [sys.executable, "-m", "cairnrl.cli", "tune", "join", "--storage", spec.url, "--study",
               study_name, "--heartbeat", str(spec.heartbeat_interval), "--threads", str(torch.get_num_threads())]
    if spec.grace_period is not None:
        command += ["--grace-period", str(spec.grace_period)]
    return [subprocess.Popen([*command, "--worker", str(index)]) for index in workers]


def _trial_counts(study: optuna.Study) -> dict[str, int]:
    counts = Counter(trial.state.name for trial in study.get_trials(deepcopy=False))
    return {state.name: counts.get(state.name, 0) for state in TrialState}


def _finish(opened: OpenStudy, run_dir: Path, top_k: int) -> TuneResult:
    """Final phase on the test seeds and the report folder."""
    # Imported on call: importing the submodule cairnrl.hpo.report binds it on the package over the lazily
    # exported function cairnrl.hpo.report.
    from cairnrl.hpo.report import write_report

    check_int("top_k", top_k, minimum=1)
    study = opened.study
    configs, default = final_phase(study, opened.settings, top_k)
    if not configs:
        reasons = sorted({str(t.user_attrs.get("fail_reason") or t.user_attrs.get("prune_reason"))
                          for t in study.get_trials(deepcopy=False)})[:5]
        raise CairnError(f"study {study.study_name!r} has no completed trial, so there is nothing to test; "
                         f"{_trial_counts(study)}; reasons: {reasons}")
    result = TuneResult(
        study_name=study.study_name, storage=opened.spec.display(), run_dir=run_dir, report_dir=run_dir / "report",
        settings=opened.settings, configs=tuple(configs), default=default, trial_counts=_trial_counts(study),
        study=study,
    )
    write_report(result)
    return result


def tune(
    algo: str | Algorithm,
    env: str,
    *,
    dataset: str | Path | None = None,
    search_space: Mapping[str, Any] | str | Path | None = None,
    n_trials: int,
    tuning_seeds: Iterable[int] | str = (0, 1, 2, 3, 4),
    test_seeds: Iterable[int] | str = tuple(range(1000, 1010)),
    budget: int,
    eval_episodes: int = 10,
    sampler: str = "tpe",
    pruner: str = "median",
    storage: str | Path | None = None,
    study_name: str | None = None,
    n_jobs: int = 1,
    top_k: int = 1,
    objective: str = "mean",
    n_evaluations: int = 4,
    n_startup_trials: int = 5,
    fixed: Mapping[str, Any] | None = None,
    enqueue: Sequence[Mapping[str, Any]] = (),
    run_dir: str | Path | None = None,
    sampler_seed: int = 0,
    worker: int = 0,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
    progress_bar: bool = False,
) -> TuneResult:
    """Tune ``algo`` on ``env`` with separate tuning and test seeds; returns the test-seed results.

    :param algo: a cairnrl algorithm or an SB3 peer (``"sqirl"``, ``"sb3-ppo"``, ``"ppo"``, or the class).
    :param env: a registered env id (cairnrl or Gymnasium); every run makes fresh copies.
    :param dataset: offline algorithms only: the dataset file or folder every run learns from (the data is fixed:
        the seeds vary initialisation and batch sampling, and ``budget`` counts gradient updates).
    :param search_space: ``None`` (the algorithm's default space), a dict or a JSON/YAML file
        (see :mod:`cairnrl.hpo.spaces`).
    :param n_trials: the study's total number of trials (over all workers and earlier runs of the same
        study): resuming runs only the missing ones; a trial failed because its worker died does not count.
    :param tuning_seeds: run seeds of each trial (an iterable or ``"0-4"``); test_seeds: of the final phase.
        Disjoint, including derived env and evaluation seeds (:mod:`cairnrl.hpo.seeds`).
    :param budget: env steps per training run; eval_episodes: deterministic episodes per evaluation.
    :param sampler: ``"tpe"`` (multivariate, constant liar) or ``"random"``; pruner: ``"median"``,
        ``"halving"`` or ``"none"``; n_startup_trials: trials before TPE models and the median pruner prunes.
    :param storage: ``None`` (a journal file ``run_dir/study.journal``), a journal file path, or an RDB URL
        such as ``postgresql://user@host/db`` (heartbeats, stale trials retried).
    :param study_name: default ``<algorithm>-<env>``; reusing a name resumes the study (same settings only).
    :param n_jobs: worker processes on this machine (this one plus ``n_jobs - 1`` started with
        ``cairnrl tune join``); each has its own sampler seed. Needs a file or a server storage, not SQLite.
    :param top_k: distinct best configurations retrained on the test seeds (the defaults always are).
    :param objective: ``"mean"`` or ``"iqm"`` of the per-seed scores.
    :param n_evaluations: evaluations per training run (the last at the end), reported to the pruner.
    :param fixed: hyperparameters fixed for every trial and for the defaults (e.g. ``{"horizon": 30}``).
    :param enqueue: configurations (values of search-space parameters) to try first in a new study.
    :param run_dir: folder of the journal and the report (default ``runs/hpo/<study_name>``).
    :param sampler_seed: master seed of the workers' sampler seeds; worker: this process's worker index
        (other machines joining the study use other indices).
    :param heartbeat_interval: seconds between heartbeats (RDB storage); grace_period: seconds without a
        heartbeat after which a trial is failed and retried (default twice the interval).
    :param progress_bar: show a bar over the study's trials (all workers) with the best tuning score so far.
    """
    check_int("n_trials", n_trials, minimum=1)
    check_int("n_jobs", n_jobs, minimum=1)
    check_int("top_k", top_k, minimum=1)
    check_int("worker", worker, minimum=0)
    settings = build_settings(
        algo, env, dataset=dataset, search_space=search_space, tuning_seeds=tuning_seeds, test_seeds=test_seeds,
        budget=budget,
        eval_episodes=eval_episodes, n_evaluations=n_evaluations, objective=objective, sampler=sampler,
        pruner=pruner, n_startup_trials=n_startup_trials, sampler_seed=sampler_seed, fixed=fixed,
    )
    study_name = study_name or default_study_name(settings.algorithm, settings.env)
    run_dir = Path(run_dir) if run_dir is not None else DEFAULT_RUN_ROOT / study_name
    spec = StorageSpec(str(storage if storage is not None else run_dir / JOURNAL_NAME), heartbeat_interval,
                       grace_period)
    if n_jobs > 1:
        if spec.is_sqlite:
            raise ConfigError("SQLite does not support parallel workers (Optuna FAQ); use the default journal file "
                              "or a PostgreSQL URL with n_jobs > 1")
        if ":" in settings.algorithm and settings.algorithm.split(":")[0] == "__main__":
            raise ConfigError("n_jobs > 1 starts new processes, which cannot import an algorithm class defined in "
                              "__main__; move it to a module")
    encoded = _encode_enqueue(settings, enqueue)
    opened = _open_study(spec, study_name, settings, worker)
    _prepare(opened, n_trials, encoded)
    children = _spawn_workers(spec, study_name, range(worker + 1, worker + n_jobs)) if n_jobs > 1 else []
    progress = TrialProgress(opened.study) if progress_bar else None
    try:
        _work(opened, worker, poll=lambda: [child.poll() for child in children], progress=progress)
    except BaseException:
        for child in children:  # their unfinished trials are retried when the study is resumed
            child.terminate()
        raise
    finally:
        for child in children:
            child.wait()
    if any(child.returncode != 0 for child in children):
        _work(opened, worker, progress=progress)  # retries the trials of workers that died and completes the budget
    if progress is not None:
        progress.close()
        print(f"final phase: retraining the best {top_k} configuration(s) and the defaults on "
              f"{len(opened.settings.test_seeds)} test seeds", file=sys.stderr)
    return _finish(opened, run_dir, top_k)


def join(
    storage: str | Path,
    study_name: str,
    *,
    worker: int,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
) -> int:
    """Work on an existing study with its recorded settings until its budget is used (another machine, or the
    extra processes of ``n_jobs``); returns the number of trials this worker ran. No final phase."""
    check_int("worker", worker, minimum=0)
    opened = _open_study(StorageSpec(str(storage), heartbeat_interval, grace_period), study_name, None, worker)
    return _work(opened, worker)


def report(
    storage: str | Path,
    study_name: str,
    *,
    run_dir: str | Path | None = None,
    top_k: int = 1,
) -> TuneResult:
    """Final phase (reusing cached test-seed results) and report folder for an existing study."""
    spec = StorageSpec(str(storage))
    opened = _open_study(spec, study_name, None, 0)
    resolve_algorithm(opened.settings.algorithm)
    if run_dir is None:
        run_dir = Path(spec.url).parent if spec.is_journal else DEFAULT_RUN_ROOT / study_name
    return _finish(opened, Path(run_dir), top_k)
