"""Training with tracking.log_model: the best checkpoint becomes a registered MLflow Model (pyfunc)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_training_logs_and_registers_a_pyfunc_model(tiny_settings, tiny_dataset, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from facekp_cli.keypoints import NAMES
    from facekp_cli.services.train import run

    settings = tiny_settings(**{"tracking.log_model": True, "tracking.register_as": "facekp-trained"})
    result = run(settings)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    version = client.get_model_version("facekp-trained", "1")
    assert version.run_id == result.run_id and version.tags["format"] == "onnx"
    assert client.get_run(result.run_id).info.status == "FINISHED"
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/facekp-trained/1")
    image = sorted((tiny_dataset / "test" / "images").iterdir())[0]
    frame = model.predict(pd.DataFrame({"image": [str(image)]}))
    assert frame.shape == (1, 28) and list(frame.columns[:2]) == [f"{NAMES[0]}_x", f"{NAMES[0]}_y"]
    assert np.isfinite(frame.to_numpy()).all()


def test_training_without_log_model_registers_nothing(tiny_settings, tmp_path):
    from mlflow.tracking import MlflowClient

    from facekp_cli.services.train import run

    result = run(tiny_settings(**{"train.epochs": 1}))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.search_registered_models() == []
    assert client.get_run(result.run_id).info.status == "FINISHED"
