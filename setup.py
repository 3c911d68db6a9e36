"""openrlhf-cfpo: Clipping-Free Policy Optimization as a drop-in objective for OpenRLHF 0.11.2."""

from glob import glob

from setuptools import find_packages, setup

OPENRLHF_VERSION = "0.11.2"
TRL_VERSION = "1.16.0"  # openrlhf_cfpo.trl_patch patches this TRL only
VERL_VERSION = "0.9.1"  # openrlhf_cfpo.verl_patch registers "cfpo" in this verl only

setup(
    name="openrlhf-cfpo",
    version="0.1.0",
    description="Clipping-Free Policy Optimization (CFPO) for OpenRLHF: patch, recipes, CPU lab, evaluation, reports",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["openrlhf_cfpo", "openrlhf_cfpo.*"]),
    install_requires=[
        "torch>=2.4",
        # Unpinned here: OpenRLHF pins 5.15.0 (the gpu extra, requirements/openrlhf-cpu.txt), verl 0.9.1
        # needs <5.11; the two live in separate environments.
        "transformers",
        "numpy",
        "matplotlib",
        "pyyaml",
        "tqdm",
        "scipy",  # the lab's t-intervals over seeds (already installed with the eval extra)
        "tensorboard",  # openrlhf-cfpo report reads OpenRLHF's event files
        "math-verify==0.9.0",
    ],
    extras_require={
        # GPU nodes: OpenRLHF with vLLM, and flash-attn (needs CUDA to build).
        "gpu": [f"openrlhf[vllm]=={OPENRLHF_VERSION}", "flash-attn==2.8.3"],
        "eval": [
            "lm-eval==0.4.13",
            "alpaca-eval==0.6.6",
            "openai>=1.5",
            # IFEval scoring (lm-eval's `ifeval` extra)
            "langdetect",
            "immutabledict",
            "nltk",
            # alpaca_eval 0.6.6 imports pkg_resources, removed in setuptools 81.
            "setuptools<81",
        ],
        # CFPO in TRL's GRPOTrainer (openrlhf_cfpo.trl_patch, examples/trl/).
        "trl": [f"trl=={TRL_VERSION}"],
        # CFPO in verl's policy-loss registry (openrlhf_cfpo.verl_patch, examples/verl/); its own
        # environment: verl needs transformers<5.11, OpenRLHF pins 5.15.0.
        "verl": [f"verl=={VERL_VERSION}"],
        "test": ["pytest>=8"],
    },
    # Suite and judge configs live in the top-level evaluation/ folder; installed copies are found by
    # openrlhf_cfpo.evaluation.suites.config_dir().
    data_files=[
        ("share/openrlhf-cfpo/evaluation", ["evaluation/suites.yaml"]),
        ("share/openrlhf-cfpo/evaluation/judges", sorted(glob("evaluation/judges/*.yaml"))),
    ],
    entry_points={
        "console_scripts": ["openrlhf-cfpo=openrlhf_cfpo.cli.main:main"],
        # `import verl` imports every module of this group, in the driver and in each Ray worker.
        "verl.plugins": ["cfpo=openrlhf_cfpo.verl_patch"],
    },
)
