"""Advice about a start: whether a model and its context fit the GPU, and what a failed start's log says to change."""
