"""Pictures of results as PNG files: ranked galleries, CMC curves and t-SNE maps of features."""
