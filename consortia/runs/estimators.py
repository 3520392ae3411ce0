"""A run's model as scikit-learn estimators: the agreed preprocessing and any learner family.

``consortia export --format sklearn`` pickles a ``Pipeline([("preprocess", RunPreprocessor),
("model", RunClassifier)])``. Both classes keep only plain values (JSON text, arrays, names),
never a live torch module or booster, so a pickle stays small and loads wherever Consortia is
installed; the learner is rebuilt on first use by the very code ``consortia predict`` runs,
so the scores are the same numbers. This module's import path is part of every exported
pickle: keep it stable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from consortia.data.preprocessing import Preprocessor
from consortia.errors import DataValidationError


class RunPreprocessor(TransformerMixin, BaseEstimator):
    """The preprocessor the institutions agreed on (from their summaries), as a transformer.

    ``fit`` learns nothing: refitting on one site's rows would silently replace the federation's
    statistics with that site's, and the model was trained behind the federation's.
    """

    def __init__(self, preprocessor_json: str = "") -> None:
        self.preprocessor_json = preprocessor_json

    @classmethod
    def of(cls, preprocessor: Preprocessor) -> RunPreprocessor:
        return cls(preprocessor.to_json()).fit(None)

    def fit(self, X: Any = None, y: Any = None) -> RunPreprocessor:
        self.preprocessor_ = Preprocessor.from_json(self.preprocessor_json)
        self.feature_names_in_ = np.asarray(self.input_columns(), dtype=object)
        self.n_features_out_ = self.preprocessor_.n_features
        return self

    def input_columns(self) -> list[str]:
        pre = Preprocessor.from_json(self.preprocessor_json)
        return list(pre.numeric) + [c for c in pre.categories if c not in pre.numeric]

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        if not isinstance(X, pd.DataFrame):
            raise DataValidationError(
                f"expects a pandas DataFrame with columns {', '.join(self.input_columns())} (got {type(X).__name__})"
            )
        lacking = [c for c in self.input_columns() if c not in X.columns]
        if lacking:
            raise DataValidationError(f"the model needs column(s) {', '.join(lacking)} that these rows lack")
        return self.preprocessor_.transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.preprocessor_.feature_names, dtype=object)


class RunClassifier(ClassifierMixin, BaseEstimator):
    """Any Consortia learner (logistic, logistic_torch, mlp, xgboost) behind ``predict_proba``.

    ``parameters`` are the model's arrays as the run folder stores them; ``fit`` continues
    training from them for ``epochs`` local epochs (fine-tuning the global model on one site's
    rows), as the federation's fine-tuning phase does.
    """

    def __init__(
        self,
        model: str = "logistic",
        n_features: int = 0,
        model_params: dict[str, Any] | None = None,
        parameters: list[np.ndarray] | None = None,
        seed: int = 0,
        epochs: int = 1,
    ) -> None:
        self.model = model
        self.n_features = n_features
        self.model_params = model_params
        self.parameters = parameters
        self.seed = seed
        self.epochs = epochs

    @classmethod
    def of(cls, model: str, n_features: int, model_params: dict[str, Any], parameters: list[np.ndarray], seed: int):
        estimator = cls(model, n_features, dict(model_params), [np.asarray(p).copy() for p in parameters], seed)
        estimator._adopt(estimator.parameters or [])
        return estimator

    def _adopt(self, parameters: list[np.ndarray]) -> None:
        self.parameters_ = [np.asarray(p).copy() for p in parameters]
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = self.n_features
        self.__dict__.pop("_learner", None)

    def _built(self):  # -> Learner
        learner = self.__dict__.get("_learner")
        if learner is None:
            from consortia.learners import make_learner

            learner = make_learner(self.model, self.n_features, dict(self.model_params or {}), seed=self.seed)
            learner.set_parameters(self.parameters_)
            self._learner = learner
        return learner

    def fit(self, X: np.ndarray, y: np.ndarray) -> RunClassifier:
        self._adopt(self.parameters or [])
        learner = self._built()
        learner.fit(np.asarray(X, dtype=np.float32), np.asarray(y, dtype=int), epochs=self.epochs, seed=self.seed)
        self._adopt(learner.get_parameters() if self.model != "xgboost" else _whole_xgboost(learner))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        positive = self._built().predict_proba(np.asarray(X))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_learner", None)  # rebuilt on load: no torch module or booster in the pickle
        return state


def _whole_xgboost(learner) -> list[np.ndarray]:
    """The whole booster after a fit (bagging learners hand out only their new trees)."""
    raw = learner._load().save_raw("json")
    return [np.frombuffer(bytes(raw), dtype=np.uint8).copy()]
