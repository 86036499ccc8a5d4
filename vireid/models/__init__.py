"""Feature extractors: the learned networks and a hand-made reference descriptor."""
