"""Evaluation: ranking metrics, the dataset protocols over trials, feature files."""

from vireid.evaluation.metrics import RankMetrics, evaluate_features, pairwise_distances, rank_metrics

__all__ = ["RankMetrics", "evaluate_features", "pairwise_distances", "rank_metrics"]
