"""Trains the example model on scikit-learn's bundled breast cancer data (no download) and writes
the model (joblib), the held-out split with scikit-learn's own predictions, and nothing else.

usage: train.py OUT_DIR [C]   (C: inverse regularisation; another C gives "version 2")
"""
import json, sys

import joblib
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

out = sys.argv[1]
c = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
data = load_breast_cancer()
x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.25, random_state=0, stratify=data.target)
model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
model.fit(x_train, y_train)
joblib.dump(model, f"{out}/model.joblib")
json.dump({
    "rows": x_test.tolist(), "labels": y_test.tolist(),
    "expected": model.predict(x_test).tolist(),
    "probabilities": model.predict_proba(x_test)[:, 1].tolist(),
    "accuracy": float(model.score(x_test, y_test)),
}, open(f"{out}/held-out.json", "w"))
print(f"trained: C={c}, held-out accuracy {model.score(x_test, y_test):.3f} on {len(y_test)} patients")
