"""Several GPU hosts: each host's status from its proxy, and the gateway (LiteLLM) and llama-swap configs."""
