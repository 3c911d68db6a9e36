from _unavailable import unavailable

TokensPrompt = unavailable("vllm.inputs.TokensPrompt")
