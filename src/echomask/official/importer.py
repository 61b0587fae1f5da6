"""`echomask import-official`: the release's checkpoint files as echomask checkpoints.

    echomask import-official --stage1 weights/pretrained_vq            # all five stage-1 files of the release
    echomask import-official --face rvq_face_600.bin --out logs/vqvae  # single files

Stage 1: the four part RVQ-VAEs and the global-motion model become
`<out>/<name>/checkpoints/last.ckpt` (`out` default `logs/vqvae`), where stage 2 (`make train-generator`)
and `echomask generate` look for them. An existing checkpoint is only replaced with `--overwrite`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from echomask.models.translation import INTEGRATION, TEST_CONTACT
from echomask.official.stage1 import RELEASE_FILE_NAMES, STAGE1_NAMES, import_stage1, write_stage1_checkpoint

DEFAULT_STAGE1_OUT = "logs/vqvae"
CHECKPOINT_NAME = Path("checkpoints") / "last.ckpt"


def add_import_official_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stage1",
        metavar="DIR",
        help="folder holding the release's stage-1 files under their release names "
        f"({', '.join(RELEASE_FILE_NAMES.values())}); files given one by one take precedence",
    )
    for name in STAGE1_NAMES:
        parser.add_argument(f"--{name}", metavar="FILE", help=f"the release's {name} file ({RELEASE_FILE_NAMES[name]})")
    parser.add_argument(
        "--out", default=DEFAULT_STAGE1_OUT, help=f"stage-1 checkpoint root: <out>/<name>/{CHECKPOINT_NAME} (default: %(default)s)"
    )
    parser.add_argument(
        "--test-contact",
        choices=TEST_CONTACT,
        default="zeroed",
        help="foot contact fed to the translation model at test time: zeroed as in training (default), "
        "or decoded (the release's test code)",
    )
    parser.add_argument(
        "--integration",
        choices=INTEGRATION,
        default="contact_locked",
        help="how the translation model's velocities become positions at test time: contact_locked (planted feet "
        "stay in place, default) or velocity (the release)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing checkpoints")


def stage1_sources(options: argparse.Namespace) -> dict[str, Path]:
    """name -> release file to import: the files given one by one, then the release's names in `--stage1`."""
    sources = {name: Path(getattr(options, name)) for name in STAGE1_NAMES if getattr(options, name)}
    if options.stage1:
        folder = Path(options.stage1)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: --stage1 is not a folder")
        for name in STAGE1_NAMES:
            sources.setdefault(name, folder / RELEASE_FILE_NAMES[name])
    if not sources:
        raise ValueError("nothing to import: give --stage1 DIR or at least one of " + ", ".join(f"--{n}" for n in STAGE1_NAMES))
    return sources


def import_official_command(options: argparse.Namespace) -> int:
    sources = stage1_sources(options)
    targets = {name: Path(options.out) / name / CHECKPOINT_NAME for name in sources}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not options.overwrite:
        raise FileExistsError(f"{', '.join(existing)}: already exist(s); add --overwrite to replace")
    inference = {"test_contact": options.test_contact, "integration": options.integration}
    modules = {name: import_stage1(name, path, **inference) for name, path in sources.items()}
    for name, module in modules.items():  # every file is checked before anything is written
        write_stage1_checkpoint(module, targets[name], sources[name])
        print(f"{name}: {sources[name]} -> {targets[name]}")
    return 0
