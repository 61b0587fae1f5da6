# Every target is a thin wrapper around one `echomask` command (SPEC §2). Which config files make up a stage and
# where its checkpoint lands come from the stage table (`python -m echomask.stages`), never from this file.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ECHOMASK := $(VENV)/bin/echomask
DATA ?= synthetic
DATA_ROOT ?= data/$(DATA)
# Model sizes: the tiny configs (each stage's experiments/demo/ overlay) on the synthetic corpus, paper otherwise.
ifeq ($(DATA),synthetic)
SIZE ?= tiny
else
SIZE ?= paper
endif
ifeq ($(filter tiny paper,$(SIZE)),)
$(error SIZE must be tiny or paper, got '$(SIZE)')
endif
PART ?= all
AUDIO ?=
PRED ?=
SYNTHETIC := data/synthetic/beat_english_v2.0.0/train_test_split.csv
CORPUS := $(if $(filter synthetic,$(DATA)),$(SYNTHETIC),)
# The stage table, asked when a recipe runs (after `install`): `--config` arguments, checkpoint, stage-1 names.
STAGES = $(PY) -m echomask.stages
configs_at = $(shell $(STAGES) configs $(1) --size $(2))
stage_configs = $(call configs_at,$(1),$(SIZE))
stage_checkpoint = $(shell $(STAGES) checkpoint $(1))
STAGE1_PARTS = $(shell $(STAGES) names --stage1)

.PHONY: install test test-slow demo data-synthetic train-evaluator train-vqvae train-generator evaluate generate bench ablation clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: install
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

data-synthetic: install
	$(ECHOMASK) synth-data --out data/synthetic

$(SYNTHETIC): | install
	$(ECHOMASK) synth-data --out data/synthetic

# The FGD feature extractor (SPEC §8.2), for corpora without BEAT2's AESKConv_240_100.bin.
# Its checkpoint is read by `echomask evaluate` and the generator's test.
train-evaluator: install $(CORPUS)
	$(ECHOMASK) fit $(call stage_configs,evaluator) --data.root $(DATA_ROOT)

# Test-split metrics: of our generator (default), or of any model's npz folder with PRED=dir.
evaluate: install
ifeq ($(PRED),)
	$(ECHOMASK) test $(call stage_configs,generator) --ckpt_path $(call stage_checkpoint,generator) \
	  --data.root $(DATA_ROOT)
else
	$(ECHOMASK) evaluate --pred $(PRED) --data-root $(DATA_ROOT)
endif

# Stage 1: the four body-part RVQ-VAEs and the translation model, in sequence (PART=upper for one).
# Stage 2 reads their checkpoints by default.
train-vqvae: install $(CORPUS)
	$(foreach part,$(if $(filter all,$(PART)),$(STAGE1_PARTS),$(PART)),\
	  $(ECHOMASK) fit $(call stage_configs,$(part)) --data.root $(DATA_ROOT) &&) true

# Stage 2: the speech-queried masked generator; reads the stage-1 checkpoints of train-vqvae and the FGD
# extractor of train-evaluator.
train-generator: install $(CORPUS)
	$(ECHOMASK) fit $(call stage_configs,generator) --data.root $(DATA_ROOT)

# Benchmarks (SPEC §10): bench/results/results.json + results.md (about 25 min on 2 CPU cores).
# BENCH_ARGS="--quick" for a short run, "--only 'train-*'" for a selection, "--accelerator cuda" on a GPU.
bench: install
	$(PY) -m bench.run --out bench/results $(BENCH_ARGS)

# The masking ablation in miniature (bench/ABLATION.md, run 10; about 80 min on 2 CPU cores): a synthetic corpus 5x the
# default, the tiny stage 1 trained on it (logs/ablation/vqvae/), then bench/ablation_masking.py (speech_queried
# vs random masking vs a shuffled-audio control; outputs/ablation/). FGD: the tiny evaluator of train-evaluator.
ABLATION_ROOT := data/synthetic_ablation
ABLATION_STAGE1_LOGS := logs/ablation/vqvae
ABLATION_EPOCHS ?= 12
ABLATION_SEEDS ?= 42 43 44
ABLATION_STAGE1_EPOCHS ?= 10
# The upper body and the translation carry the rhythm BC reads: at 10 epochs their round trip keeps almost none of it.
ABLATION_STAGE1_EPOCHS_RHYTHM ?= 40
ablation: install
	$(ECHOMASK) synth-data --out $(ABLATION_ROOT) --sequences-per-speaker 40 --val-per-speaker 2 --test-per-speaker 4
	test -f $(call stage_checkpoint,evaluator) || $(MAKE) train-evaluator
	$(foreach part,$(STAGE1_PARTS),\
	  $(ECHOMASK) fit $(call configs_at,$(part),tiny) --data.root $(ABLATION_ROOT) \
	    --trainer.max_epochs $(if $(filter upper translation,$(part)),$(ABLATION_STAGE1_EPOCHS_RHYTHM),$(ABLATION_STAGE1_EPOCHS)) \
	    --trainer.logger.init_args.save_dir $(ABLATION_STAGE1_LOGS) &&) true
	$(PY) bench/ablation_masking.py --data-root $(ABLATION_ROOT) --epochs $(ABLATION_EPOCHS) --out outputs/ablation \
	  --seeds $(ABLATION_SEEDS) \
	  $(foreach part,$(STAGE1_PARTS),--stage1 $(part)=$(ABLATION_STAGE1_LOGS)/$(part)/checkpoints/last.ckpt)

# The whole pipeline on the synthetic corpus: corpus, evaluator, stage 1, stage 2, test metrics, generate.
demo: install
	$(ECHOMASK) demo

generate: install
	$(ECHOMASK) generate --audio $(AUDIO)

clean:
	rm -rf logs outputs data/cache data/synthetic $(ABLATION_ROOT)
