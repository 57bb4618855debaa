"""Starting models: flags and argv, backends, supervisor, logs, fit estimate, diagnosis, launch test."""
