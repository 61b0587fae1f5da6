"""A mixin giving a LightningModule the configured kinematics without saving it in checkpoints.

An SMPL-X body model holds hundreds of MB of buffers that are data, not learned state: keeping it
out of the module tree keeps checkpoints small and lets a checkpoint trained with one body model
be evaluated with another. It follows the module to its device on first use.
"""
from __future__ import annotations

from echomask.motion.kinematics import Kinematics, build_kinematics


class KinematicsHolder:
    """Mixin for a `LightningModule`: call `init_kinematics(smplx_model_dir)` in `__init__`."""

    def init_kinematics(self, smplx_model_dir: str | None) -> None:
        # object.__setattr__ bypasses nn.Module registration: not a submodule, not in state_dict.
        object.__setattr__(self, "_kinematics", build_kinematics(smplx_model_dir))

    @property
    def kinematics(self) -> Kinematics:
        """The kinematics, on the module's device."""
        kinematics: Kinematics = self._kinematics
        buffer = next(iter(kinematics.buffers()), None)
        if buffer is not None and buffer.device != self.device:
            kinematics.to(self.device)
        return kinematics
