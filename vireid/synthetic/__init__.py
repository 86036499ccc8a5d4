"""Synthetic datasets written in the official on-disk layouts: the plan of a
layout's files (plan.py, filled by each dataset module), the writer that
renders and saves them (writer.py), and the person renderer (appearance.py)."""
