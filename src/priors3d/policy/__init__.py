"""EquivAct (Yang et al.): SIM(3)-equivariant visuomotor policies that learn from a few demonstrations.

Simulated tabletop tasks seen by a depth camera (:mod:`.scene`, :mod:`.tasks`, :mod:`.cloth`), scripted
demonstrations and batched rollouts (:mod:`.rollout`), a VN policy and its PointNet baseline (:mod:`.model`),
behaviour cloning and evaluation in the Original / R+Su / R+Sn / R+Sn+P settings (:mod:`.train`), episode
pictures (:mod:`.pictures`). See docs/policy.md.
"""

from .cloth import ClothCoverTask
from .model import PointNetPolicy, VNPolicy, build_policy
from .pictures import episode_strip
from .rollout import TASKS, collect_demos, expert_actor, load_demos, make_task, rollout, save_demos
from .scene import SETTINGS, DepthCamera, SceneTransform, sample_transform
from .tasks import PickPlaceTask, PushTask, Task
from .train import PolicyTrainConfig, PolicyTrainer, evaluate_policy, load_policy, policy_actor, train_policy

__all__ = [
    "SETTINGS", "TASKS", "ClothCoverTask", "DepthCamera", "PickPlaceTask", "PointNetPolicy", "PolicyTrainConfig",
    "PolicyTrainer", "PushTask", "SceneTransform", "Task", "VNPolicy", "build_policy", "collect_demos",
    "episode_strip", "evaluate_policy", "expert_actor", "load_demos", "load_policy", "make_task", "policy_actor",
    "rollout", "sample_transform", "save_demos", "train_policy",
]
