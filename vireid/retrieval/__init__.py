"""Retrieval: a saved FAISS index over a gallery's features, searched with query features."""
