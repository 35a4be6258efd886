"""A FastAPI service with its own scikit-learn model, wired into infertrail with one call.

Run it with ``uvicorn churn_app:app``; stop it with Ctrl-C or SIGTERM.
"""

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel
from sklearn.linear_model import LogisticRegression

import infertrail
from infertrail.drift import build_tabular_profile

FEATURES = ["tenure_months", "monthly_spend", "support_tickets"]

# The team's own model. Usually loaded from its file; trained here so the example stands alone.
rng = np.random.default_rng(7)
X = rng.normal([24, 60, 1], [12, 25, 1], size=(2000, 3))
y = (X @ [-0.08, 0.02, 0.9] + rng.normal(size=2000) > 0).astype(int)
clf = LogisticRegression(max_iter=1000).fit(X, y)
joblib.dump(clf, "churn.joblib")
model = infertrail.ModelInfo.of_artifact("churn", "1.0.0", "churn.joblib")

# Its drift reference: the training inputs and the model's own predictions on them.
proba = clf.predict_proba(X)[:, 1]
profile = build_tabular_profile(
    X,
    FEATURES,
    predictions=np.where(proba >= 0.5, "churn", "stay"),
    confidences=np.maximum(proba, 1 - proba),
    labels=["churn", "stay"],
    model_name=model.name,
    model_sha256=model.sha256,
)

app = FastAPI(title="churn-api")
runtime = infertrail.instrument(
    app,
    infertrail.Settings(service_name="churn-api", team="growth"),
    models=[model],
    profiles={"churn": profile},
)


class Customer(BaseModel):
    customer_id: str
    tenure_months: float
    monthly_spend: float
    support_tickets: float


@app.post("/churn")
async def predict_churn(customer: Customer) -> dict[str, object]:
    features = {name: getattr(customer, name) for name in FEATURES}
    with runtime.observe(model, features, subject=customer.customer_id) as event:
        p = float(clf.predict_proba([list(features.values())])[0, 1])
        event.label = "churn" if p >= 0.5 else "stay"
        event.score, event.confidence = p, max(p, 1 - p)
    # The answer leaves only once its audit record is durable (else 503, no decision).
    receipt = await runtime.audit_receipt_async(event)
    return {
        "churn_probability": p,
        "request_id": event.request_id,
        "trace_id": event.trace_id_hex,
        "audit_seq": receipt.seq if receipt else None,
        # Proof for the customer that the log holds the decision (docs/receipts.md).
        "audit_receipt": receipt.to_dict() if receipt else None,
    }
