"""Discovery: find models on disk (Hugging Face folders and cache, GGUF files, Ollama store) and read their facts."""
