"""Running backends: the supervisor that starts and stops them, their logs, and the launch test."""
