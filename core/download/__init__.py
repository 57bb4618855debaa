"""Downloads: Hugging Face Hub and Ollama pulls, progress, registering what was downloaded."""
