"""Data plumbing shared by every vertical: schema, partitioning, splits, preprocessing."""

from consortia.data.preprocessing import FeatureSummary, Preprocessor, merge_summaries
from consortia.data.schema import Feature, TabularSchema

__all__ = ["Feature", "FeatureSummary", "Preprocessor", "TabularSchema", "merge_summaries"]
