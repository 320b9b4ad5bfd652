"""S3RL (Snapshot RL with Status Classification and Student Trajectory Truncation) on SB3 students.

Zhao et al., arXiv 2403.00673 (2024); see :mod:`cairnrl.algos.s3rl.algorithm`.
"""

from cairnrl.algos.s3rl.algorithm import S3RL
from cairnrl.algos.s3rl.envs import StudentEnv
from cairnrl.algos.s3rl.students import PAPER_STUDENT_KWARGS, STUDENT_CLASSES
from cairnrl.algos.s3rl.teachers import load_teacher, teacher_fingerprint, teacher_snapshots

__all__ = [
    "PAPER_STUDENT_KWARGS",
    "S3RL",
    "STUDENT_CLASSES",
    "StudentEnv",
    "load_teacher",
    "teacher_fingerprint",
    "teacher_snapshots",
]
