# Every target bootstraps .venv on a fresh machine: CPU torch, OpenRLHF 0.11.2 without its GPU-only
# requirements (flash-attn, vllm), then this package with its eval and test extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
PIN    := -c requirements/cpu-constraints.txt
STAMP  := $(VENV)/.installed
# verl 0.9.1 needs transformers<5.11 (OpenRLHF pins 5.15.0): its tests run in an environment of their own.
VENV_VERL  := .venv-verl
PY_VERL    := $(VENV_VERL)/bin/python
PIP_VERL   := $(PY_VERL) -m pip --disable-pip-version-check
STAMP_VERL := $(VENV_VERL)/.installed

.PHONY: venv test demo bench gpu-check clean data

venv: $(STAMP)

$(STAMP): setup.py requirements/openrlhf-cpu.txt requirements/cpu-constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24"
	$(PIP) install -q $(PIN) torch==2.13.0
	$(PIP) install -q $(PIN) -r requirements/openrlhf-cpu.txt
	$(PIP) install -q --no-deps openrlhf==0.11.2
	$(PIP) install -q $(PIN) -e '.[eval,test,trl]'
	touch $@

$(STAMP_VERL): setup.py requirements/cpu-constraints.txt
	$(PYTHON) -m venv $(VENV_VERL)
	$(PIP_VERL) install -q --upgrade "pip>=24"
	$(PIP_VERL) install -q $(PIN) torch==2.13.0
	$(PIP_VERL) install -q $(PIN) verl==0.9.1
	$(PIP_VERL) install -q $(PIN) -e '.[verl,test]'
	touch $@

# The main suite in .venv (pytest.ini leaves tests/verl out), then the verl tests in .venv-verl.
test: $(STAMP) $(STAMP_VERL)
	$(PY) -m pytest
	$(PY_VERL) -m pytest tests/verl

# The full benchmark files the data tests read, from their canonical sources into the download cache
# ($OPENRLHF_CFPO_DATA_CACHE, default ~/.cache/openrlhf_cfpo/benchmarks), and NLTK's punkt_tab into
# ~/nltk_data; GPQA (gated) is not among them; the Llama-3 tokenizer (gated) needs HF_TOKEN. Offline nodes: docs/evaluation.md, "Offline compute nodes".
TEST_DATA := alpaca_eval,arena_hard,mt_bench,ifeval,ifeval.reference_gpt4,openllm,math500,gsm8k,aime24,math_train,tokenizers.qwen3,tokenizers.llama3
data: $(STAMP)
	$(PY) -m openrlhf_cfpo.cli data fetch --benchmarks $(TEST_DATA)

# The CPU lab with its defaults, both settings, one worker process per CPU, into runs/lab/<timestamp>-<setting>
# (docs/lab.md): rlvr, 10 seeds x ppo,cfpo x iterations 1,2,4,8,16 (sample reuse, Tables 5-10); rlhf, 10 seeds x
# ppo,cfpo x beta 0.02,0 (RLOO against a length-biased reward model, Tables 1-2, Figure 3).
demo: $(STAMP)
	$(PY) -m openrlhf_cfpo.cli lab
	$(PY) -m openrlhf_cfpo.cli lab --setting rlhf

# OpenRLHF's PolicyLoss ppo vs patched cfpo, forward+backward: time and peak-memory ratios (docs/bench.md).
bench: $(STAMP)
	$(PY) bench/loss_bench.py

# The prepared check for a one-GPU machine with torch and transformers (docs/bench.md); it makes its
# own venv on top of $(PYTHON), not the CPU .venv.
gpu-check:
	PYTHON=$(PYTHON) bash bench/gpu_check.sh

clean:
	rm -rf $(VENV) $(VENV_VERL) build *.egg-info
