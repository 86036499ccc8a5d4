"""Running models: feature extraction (and, later, training)."""
