"""`echomask import-official`: the release's checkpoint files as echomask checkpoints.

    echomask import-official --stage1 weights/pretrained_vq            # all five stage-1 files of the release
    echomask import-official --face rvq_face_600.bin --out logs/vqvae  # single files
    echomask import-official --generator best_echomask.bin --stage1 weights/pretrained_vq   # stage 2 too

Stage 1: the four part RVQ-VAEs and the global-motion model become
`<out>/<name>/checkpoints/last.ckpt` (`out` default `logs/vqvae`), where stage 2 (`make train-generator`)
and `echomask generate` look for them. Stage 2 (`--generator`, needs all five stage-1 files): ONE generator
checkpoint (official/generator.py) at `--generator-out` (default where `make train-generator` leaves its
checkpoint, so `echomask generate`, `echomask test` and the notebook use it unchanged), with the speech settings of
the paper config (`--hubert` names the HuBERT). An existing checkpoint is only replaced with `--overwrite`; every
file is checked before anything is written.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from echomask.audio.speech_settings import SpeechSettings
from echomask.models.translation import INTEGRATION, TEST_CONTACT
from echomask.official.stage1 import RELEASE_FILE_NAMES, STAGE1_NAMES, import_stage1, write_imported_checkpoint
from echomask.stages import STAGES

DEFAULT_STAGE1_OUT = "logs/vqvae"
CHECKPOINT_NAME = Path("checkpoints") / "last.ckpt"
PAPER_HUBERT = "facebook/hubert-large-ls960-ft"  # experiments/generator.yaml; the other speech settings: defaults


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
    parser.add_argument("--generator", metavar="FILE", help="the release's stage-2 file (best_echomask.bin)")
    parser.add_argument(
        "--generator-out",
        default=STAGES["generator"].checkpoint,
        help="where the generator checkpoint is written (default: %(default)s)",
    )
    parser.add_argument(
        "--hubert",
        default=PAPER_HUBERT,
        help="the HuBERT the generator's speech features come from: a hub name in the local cache, a local folder "
        "or tiny-random (default: %(default)s, the paper's)",
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
    missing = [name for name in STAGE1_NAMES if name not in sources]
    if options.generator and missing:
        raise ValueError(f"--generator needs all five stage-1 files (--stage1 DIR); missing: {', '.join(missing)}")
    return sources


def import_official_command(options: argparse.Namespace) -> int:
    from echomask.official.generator import import_generator  # imports the generator module (Lightning, models)

    sources = stage1_sources(options)
    targets = {name: Path(options.out) / name / CHECKPOINT_NAME for name in sources}
    if options.generator:
        sources["generator"], targets["generator"] = Path(options.generator), Path(options.generator_out)
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not options.overwrite:
        raise FileExistsError(f"{', '.join(existing)}: already exist(s); add --overwrite to replace")
    inference = {"test_contact": options.test_contact, "integration": options.integration}
    modules = {name: import_stage1(name, sources[name], **inference) for name in STAGE1_NAMES if name in sources}
    if options.generator:
        speech = SpeechSettings(hubert=options.hubert)
        imported = import_generator(sources["generator"], modules, speech)
        modules["generator"] = imported.module
        dropped = ", ".join(f"{count} {reason}" for reason, count in imported.dropped.items())
        print(f"generator: {sum(imported.dropped.values())} release tensors dropped "
              f"({imported.dropped_parameters:,} values): {dropped}")  # fmt: skip
    for name, module in modules.items():  # every file is checked before anything is written
        write_imported_checkpoint(module, targets[name], sources[name])
        print(f"{name}: {sources[name]} -> {targets[name]}")
    return 0
