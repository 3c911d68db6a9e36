"""Table 3's learning rate, the one RLVR training setting that depends on the model size: 1e-6 for
the 7B models, 3e-6 for 1.5B and 3B. The RLVR recipes of all three frameworks read it from here
(OpenRLHF's and verl's shell recipes through ``python -m openrlhf_cfpo.learning_rate MODEL [SIZE]``,
the TRL recipe by import), as they read the system prompt from ``openrlhf_cfpo.prompts``.
"""

from __future__ import annotations

from typing import Dict, Optional

from openrlhf_cfpo.prompts import MODEL_SIZES, paper_model_size, print_for_model

# Model size (as the paper names it) -> Table 3's "Learning Rate" (columns "1.5B/3B" and "7B").
RLVR_LEARNING_RATES: Dict[str, float] = {"1.5B": 3e-6, "3B": 3e-6, "7B": 1e-6}


def rlvr_learning_rate(size: str) -> float:
    """Table 3's learning rate for a model ``size`` ("1.5B", "3B" or "7B")."""
    try:
        return RLVR_LEARNING_RATES[size]
    except KeyError:
        raise ValueError(
            f"no RLVR learning rate for model size {size!r}: Table 3 gives one for {', '.join(MODEL_SIZES)}"
        ) from None


def rlvr_learning_rate_for_model(model: str, size: Optional[str] = None) -> float:
    """The learning rate ``model`` trains with: ``size``'s when given, else that of the size its name
    states. Raises ValueError naming the fix when the name states no single paper size."""
    return rlvr_learning_rate(paper_model_size(model, size, what="learning rates"))


def main(argv=None) -> None:
    """``python -m openrlhf_cfpo.learning_rate MODEL [SIZE]`` prints MODEL's learning rate (the shell recipes)."""
    print_for_model("openrlhf_cfpo.learning_rate", main.__doc__,
                    lambda model, size: f"{rlvr_learning_rate_for_model(model, size):g}", argv)


if __name__ == "__main__":
    main()
