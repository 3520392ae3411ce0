"""Metrics: scikit-learn's binary metrics for the verticals, and pooling over institutions."""
