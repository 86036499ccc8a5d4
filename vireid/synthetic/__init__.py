"""Synthetic datasets written in the official on-disk layouts of the registered
datasets: the writer that renders and saves a dataset module's plan
(writer.py; the plan's records are vireid.data.synthetic_plan) and the person
renderer (appearance.py)."""
