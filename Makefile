# Every target is a thin wrapper around one `echomask` command (SPEC §2).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ECHOMASK := $(VENV)/bin/echomask
DATA ?= synthetic
DATA_ROOT ?= data/$(DATA)
# Model sizes: the tiny demo configs on the synthetic corpus, the paper configs otherwise.
ifeq ($(DATA),synthetic)
SIZE ?= demo
else
SIZE ?= paper
endif
PART ?= all
STAGE1_PARTS := face upper hands lower translation
AUDIO ?=
PRED ?=
SYNTHETIC := data/synthetic/beat_english_v2.0.0/train_test_split.csv
CORPUS := $(if $(filter synthetic,$(DATA)),$(SYNTHETIC),)
size_config = $(if $(filter demo,$(SIZE)),--config experiments/demo/$(1).yaml,)

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
# Checkpoint: logs/evaluator/checkpoints/last.ckpt (read by `echomask evaluate` and the generator's test).
train-evaluator: install $(CORPUS)
	$(ECHOMASK) fit --config $(if $(filter demo,$(SIZE)),experiments/demo/evaluator.yaml,experiments/evaluator.yaml) \
	  --data.root $(DATA_ROOT)

# Test-split metrics: of our generator (default), or of any model's npz folder with PRED=dir.
evaluate: install
ifeq ($(PRED),)
	$(ECHOMASK) test --config experiments/generator.yaml $(call size_config,generator) \
	  --ckpt_path logs/generator/checkpoints/last.ckpt --data.root $(DATA_ROOT)
else
	$(ECHOMASK) evaluate --pred $(PRED) --data-root $(DATA_ROOT)
endif

# Stage 1: the four body-part RVQ-VAEs and the translation model, in sequence (PART=upper for one).
# Checkpoints: logs/vqvae/<part>/checkpoints/last.ckpt (stage 2 reads these by default).
train-vqvae: install $(CORPUS)
	for part in $(if $(filter all,$(PART)),$(STAGE1_PARTS),$(PART)); do \
	  $(ECHOMASK) fit --config experiments/vqvae/base.yaml $(call size_config,vqvae) \
	    --config experiments/vqvae/$$part.yaml --data.root $(DATA_ROOT) || exit 1; \
	done

# Stage 2: the speech-queried masked generator; reads the stage-1 checkpoints of train-vqvae and the FGD
# extractor of train-evaluator. Checkpoints: logs/generator/checkpoints/last.ckpt.
train-generator: install $(CORPUS)
	$(ECHOMASK) fit --config experiments/generator.yaml $(call size_config,generator) --data.root $(DATA_ROOT)

# Benchmarks (SPEC §10): bench/results/results.json + results.md (about 15 min on 2 CPU cores).
# BENCH_ARGS="--quick" for a short run, "--only 'train-*'" for a selection, "--accelerator cuda" on a GPU.
bench: install
	$(PY) bench/run.py --out bench/results $(BENCH_ARGS)

# The masking ablation in miniature (bench/ABLATION.md, run 9; about 66 min on 2 CPU cores): a synthetic corpus 5x the
# default, the demo stage 1 trained on it (logs/ablation/vqvae/), then bench/ablation_masking.py (speech_queried
# vs random masking vs a shuffled-audio control; outputs/ablation/). FGD: the demo evaluator (logs/evaluator/).
ABLATION_ROOT := data/synthetic_ablation
ABLATION_EPOCHS ?= 12
ABLATION_SEEDS ?= 42 43
ABLATION_STAGE1_EPOCHS ?= 10
# The upper body and the translation carry the rhythm BC reads: at 10 epochs their round trip keeps almost none of it.
ABLATION_STAGE1_EPOCHS_RHYTHM ?= 40
ablation: install
	$(ECHOMASK) synth-data --out $(ABLATION_ROOT) --sequences-per-speaker 40 --val-per-speaker 2 --test-per-speaker 4
	test -f logs/evaluator/checkpoints/last.ckpt || $(MAKE) train-evaluator
	for part in $(STAGE1_PARTS); do \
	  case $$part in upper|translation) epochs=$(ABLATION_STAGE1_EPOCHS_RHYTHM);; *) epochs=$(ABLATION_STAGE1_EPOCHS);; esac; \
	  $(ECHOMASK) fit --config experiments/vqvae/base.yaml --config experiments/demo/vqvae.yaml \
	    --config experiments/vqvae/$$part.yaml --data.root $(ABLATION_ROOT) --trainer.max_epochs $$epochs \
	    --trainer.logger.init_args.save_dir logs/ablation/vqvae || exit 1; \
	done
	$(PY) bench/ablation_masking.py --data-root $(ABLATION_ROOT) --epochs $(ABLATION_EPOCHS) --out outputs/ablation \
	  --seeds $(ABLATION_SEEDS) \
	  $(foreach part,$(STAGE1_PARTS),--stage1 $(part)=logs/ablation/vqvae/$(part)/checkpoints/last.ckpt)

# The whole pipeline on the synthetic corpus: corpus, evaluator, stage 1, stage 2, test metrics, generate.
demo: install
	$(ECHOMASK) demo

generate: install
	$(ECHOMASK) generate --audio $(AUDIO)

clean:
	rm -rf logs outputs data/cache data/synthetic $(ABLATION_ROOT)
