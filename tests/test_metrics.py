"""Metrics: metrics.jsonl round trip and resume; what TensorBoard (one run per seed and one for
the mean) and W&B receive from a real `launch.offline` run, read back from their files with
independent readers of the two formats."""
import glob
import json
import os
import re
import struct
import sys

import numpy as np
import pytest
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

from configs.d4rl import get_config
from launch import offline
from synther_jax.analysis.fidelity_report import headline_figures
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
    assert os.listdir(tmp_path / "tensorboard" / "mean")


def tfrecords(path):
    """The records of a TFRecord file: u64 length, u32 CRC, data, u32 CRC each."""
    with open(path, "rb") as f:
        data = f.read()
    position = 0
    while position < len(data):
        (length,) = struct.unpack("<Q", data[position:position + 8])
        yield data[position + 12:position + 12 + length]
        position += 16 + length


def tensorboard_contents(workdir):
    """{(run, tag, step): value} of every scalar in the event files of every run (a folder under
    tensorboard/), and {run: hparams} of each run's session start."""
    scalars, hparams = {}, {}
    for path in event_files(workdir):
        run = os.path.basename(os.path.dirname(path))
        for record in tfrecords(path):
            event = Event.FromString(record)
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    start = HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
                    hparams.setdefault(run, {}).update({k: getattr(v, v.WhichOneof("kind"))
                                                        for k, v in start.hparams.items()})
                else:
                    scalars[(run, value.tag, event.step)] = value.simple_value
    return scalars, hparams


def jsonl_scalars(workdir):
    """{(`<stage>/<name>`, step): value} of every scalar in metrics.jsonl, per-seed names as they are there."""
    return {(f"{r['stage']}/{name}", r["step"]): value for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
            for name, value in r.items() if name not in ("stage", "step")}


def expected_runs(workdir):
    """What TensorBoard should hold, from metrics.jsonl: `<tag>/seed<i>` as `<tag>` in run seed<i>,
    the rest in run mean, and there also the seeds' mean of a tag that only has per-seed values."""
    expected, seeds = {}, {}
    for (tag, step), value in jsonl_scalars(workdir).items():
        match = re.fullmatch(r"(.+)/seed(\d+)", tag)
        if match:
            expected[(f"seed{match.group(2)}", match.group(1), step)] = value
            seeds.setdefault((match.group(1), step), []).append(value)
        else:
            expected[("mean", tag, step)] = value
    for (tag, step), values in seeds.items():
        expected.setdefault(("mean", tag, step), float(np.mean(values)))
    return expected


def tiny_run_config(dataset):
    config = get_config("hopper-random,smoke")
    config.dataset, config.env_id, config.data, config.analyze = dataset, "Hopper-v5", "real", False
    config.agent_steps, config.eval_every, config.eval_episodes = 20, 10, 1
    return config


def event_files(workdir):
    return sorted(glob.glob(os.path.join(workdir, "tensorboard", "*", "events.out.tfevents.*")))


def test_tensorboard_has_a_run_per_seed_and_the_mean_with_the_fidelity_and_a_rerun_adds_no_event_file(
        hopper_random_npz, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any import of W&B would fail: it is not asked for
    workdir = str(tmp_path / "run")
    config = tiny_run_config(hopper_random_npz)  # on augmented data, whose fidelity report is analysed
    config.data, config.augmentation, config.num_samples, config.analyze = "synthetic", "additive", 2000, True
    offline.run(config, workdir)
    scalars, hparams = tensorboard_contents(workdir)
    expected = expected_runs(workdir)
    assert scalars.keys() == expected.keys()
    assert all(scalars[key] == pytest.approx(value, rel=1e-6, abs=1e-6) for key, value in expected.items())
    assert sorted(os.listdir(os.path.join(workdir, "tensorboard"))) == ["mean", "seed0", "seed1"]

    # The same tag in every run: each seed's own value, and their mean.
    evaluations = json.loads(open(os.path.join(workdir, "evaluations.json")).read())
    for evaluation in evaluations:
        step, returns = evaluation["step"], evaluation["returns"]
        for seed, seed_return in enumerate(returns):
            assert scalars[(f"seed{seed}", "eval/return", step)] == pytest.approx(seed_return, rel=1e-6)
        assert scalars[("mean", "eval/return", step)] == pytest.approx(np.mean(returns), rel=1e-6)
        assert scalars[("mean", "eval/return_mean", step)] == pytest.approx(np.mean(returns), rel=1e-6)
    assert {("seed0", "agent/critic_loss", 10), ("seed1", "agent/critic_loss", 20),
            ("mean", "agent/critic_loss", 20)} <= scalars.keys()

    # The fidelity report's headline figures, in the mean run (one augmentation for all seeds).
    report = json.loads(open(os.path.join(workdir, "analysis", "report.json")).read())
    figures = {name: value for name, value in headline_figures(report).items() if value is not None}
    assert {"marginal_score", "correlation_score", "dynamics_mse_mean"} <= figures.keys()
    fidelity = {(run, tag, step): value for (run, tag, step), value in scalars.items() if tag.startswith("fidelity/")}
    assert fidelity == pytest.approx({("mean", f"fidelity/{name}", 0): value for name, value in figures.items()},
                                     rel=1e-6)

    for run in ("mean", "seed0", "seed1"):
        assert hparams[run]["algorithm"] == "td3_bc" and hparams[run]["diffusion.width"] == 256.0
        assert hparams[run]["td3_bc.hidden_dims"] == "[256, 256]"

    files = event_files(workdir)
    offline.run(config, workdir)  # nothing left to do
    assert event_files(workdir) == files


def test_per_seed_denoisers_fidelity_goes_to_each_seeds_run_and_their_mean(tmp_path):
    config = get_config("hopper-random,smoke")
    config.denoiser_per_seed, config.num_seeds, config.data = True, 2, "synthetic"
    workdir = str(tmp_path)
    marginals = [0.8, 0.9]
    for seed, marginal in enumerate(marginals):
        folder = os.path.join(workdir, "analysis", f"seed{seed}")
        os.makedirs(folder)
        consistency = {"falls": 0.01, "falls_flagged": 0.1 * seed, "flags_without_fall": 0.0, "fallen_states": 0.002}
        report = {"marginal_score": marginal, "correlation_score": 0.95, "real_terminals": 3,
                  "synthetic_terminals": 4 + seed, "sources": {"synthetic": {"min_distance_median": 0.1 * seed}},
                  "terminal_consistency": {"rule": "hopper", "synthetic": consistency,
                                           "real": {**consistency, "falls_flagged": 1.0}}}
        with open(os.path.join(folder, "report.json"), "w") as f:
            json.dump(report, f)
    writer = MetricsWriter(workdir)
    offline.write_fidelity_metrics(config, workdir, writer, step=15_000)
    writer.close()
    scalars, _ = tensorboard_contents(workdir)
    for seed, marginal in enumerate(marginals):
        assert scalars[(f"seed{seed}", "fidelity/marginal_score", 15_000)] == pytest.approx(marginal)
        assert scalars[(f"seed{seed}", "fidelity/synthetic_terminals", 15_000)] == 4 + seed
        assert scalars[(f"seed{seed}", "fidelity/synthetic_falls_flagged", 15_000)] == pytest.approx(0.1 * seed)
        assert scalars[(f"seed{seed}", "fidelity/real_falls_flagged", 15_000)] == 1.0
    assert scalars[("mean", "fidelity/marginal_score", 15_000)] == pytest.approx(np.mean(marginals))
    assert scalars[("mean", "fidelity/min_distance_median", 15_000)] == pytest.approx(0.05)
    assert scalars[("mean", "fidelity/synthetic_falls_flagged", 15_000)] == pytest.approx(0.05)
    assert scalars[("mean", "fidelity/synthetic_fallen_states", 15_000)] == pytest.approx(0.002)
    summary = offline.fidelity_summary(config, workdir)  # results.json's fidelity section
    assert [figures["synthetic_falls_flagged"] for figures in summary["per_denoiser"]] == pytest.approx([0.0, 0.1])
    assert summary["mean"]["real_falls_flagged"] == 1.0 and summary["std"]["synthetic_falls"] == 0.0
    assert not any("dynamics" in tag for _, tag, _ in scalars)  # no simulator check: left out


def wandb_records(path):
    """The protobuf records of a W&B run file (LevelDB's log format behind a 7-byte ':W&B' header:
    32 KiB blocks of chunks with a u32 CRC, u16 length and u8 type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto.wandb_internal_pb2 import Record

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:  # a block's tail too short for a chunk header is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if length == 0 and kind == 0:
            position += room
            continue
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            yield Record.FromString(pending)
            pending = b""


def test_wandb_offline_run_holds_the_same_scalars_as_metrics_jsonl_and_the_config(hopper_random_npz, tmp_path,
                                                                                   monkeypatch):
    pytest.importorskip("wandb")
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    monkeypatch.setenv("WANDB_SILENT", "true")
    workdir = str(tmp_path / "run")
    config = tiny_run_config(hopper_random_npz)
    config.wandb.update(project="synther-test", mode="offline")
    offline.run(config, workdir)

    (run_file,) = glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))
    logged, run_config = {}, {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            stage = next(key.split("/")[0] for key in row if not key.startswith("_"))
            logged.update({(key, row[f"{stage}/step"]): value for key, value in row.items()
                           if not key.startswith("_") and key != f"{stage}/step"})
        elif kind == "run":
            run_config = {item.key or ".".join(item.nested_key): json.loads(item.value_json)
                          for item in record.run.config.update}
    scalars = jsonl_scalars(workdir)
    assert logged.keys() == scalars.keys() and len(logged) > 10
    assert all(value == pytest.approx(scalars[key], rel=1e-6, abs=1e-6) for key, value in logged.items())
    assert run_config["algorithm"] == "td3_bc" and run_config["diffusion"]["width"] == 256
    assert run_config["dataset"] == hopper_random_npz

    runs = glob.glob(os.path.join(workdir, "wandb", "offline-run-*"))
    offline.run(config, workdir)  # nothing left to do: no new W&B run, no new event file
    assert glob.glob(os.path.join(workdir, "wandb", "offline-run-*")) == runs
