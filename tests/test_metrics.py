import os

from synther_jax.metrics import MetricsWriter, read_metrics


def test_metrics_round_trip_and_resume_dedup(tmp_path):
    writer = MetricsWriter(str(tmp_path))
    writer.write("diffusion", 10, {"loss": 2.0})
    writer.write("diffusion", 20, {"loss": 1.5})
    writer.close()
    resumed = MetricsWriter(str(tmp_path))  # a resumed run repeats step 20 and goes on
    resumed.write("diffusion", 20, {"loss": 1.4})
    resumed.write("eval", 20, {"return": 300.0})
    resumed.close()
    records = read_metrics(os.path.join(tmp_path, "metrics.jsonl"), "diffusion")
    assert [(r["step"], r["loss"]) for r in records] == [(10, 2.0), (20, 1.4)]
    assert read_metrics(os.path.join(tmp_path, "metrics.jsonl"), "eval")[0]["return"] == 300.0
    assert os.listdir(tmp_path / "tensorboard")
