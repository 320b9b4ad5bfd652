"""S3RL (Snapshot RL with Status Classification and Student Trajectory Truncation) on SB3 students.

Zhao et al. (2024), "Snapshot Reinforcement Learning"; see :mod:`cairnrl.algos.s3rl.algorithm`.
"""

from cairnrl.algos.s3rl.algorithm import S3RL
from cairnrl.algos.s3rl.envs import StudentEnv
from cairnrl.algos.s3rl.rollouts import SnapshotCollection, collect_snapshots
from cairnrl.algos.s3rl.status import kmeans_1d, status_groups
from cairnrl.algos.s3rl.students import PAPER_STUDENT_KWARGS, STUDENT_CLASSES
from cairnrl.algos.s3rl.teachers import load_teacher, teacher_fingerprint, teacher_snapshots

__all__ = [
    "PAPER_STUDENT_KWARGS",
    "S3RL",
    "STUDENT_CLASSES",
    "SnapshotCollection",
    "StudentEnv",
    "collect_snapshots",
    "kmeans_1d",
    "load_teacher",
    "status_groups",
    "teacher_fingerprint",
    "teacher_snapshots",
]
