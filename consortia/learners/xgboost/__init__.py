"""XGBoost, federated three ways: one package for the learner, its binning and its strategies.

* ``learner``: ``XGBoostLearner`` behind the Learner contract (booster bytes as parameters);
* ``cyclic``: Flower's ``FedXgbCyclic`` with a reproducible visiting order (bagging is Flower's
  ``FedXgbBagging`` as it is);
* ``binning``: global bin edges agreed from quantile summaries (what makes histogram mode exact);
* ``histogram``: lossless joint training over XGBoost's federated communicator.

How ``xgb_mode`` picks the strategy is config logic (``consortia.config.xgboost``), so that every
place that reads a config agrees without importing XGBoost.
"""

from consortia.learners.xgboost.learner import XGBoostLearner, build

__all__ = ["XGBoostLearner", "build"]
