"""Starting models: what each backend accepts (here), planning a start, advice about it, and running it."""
