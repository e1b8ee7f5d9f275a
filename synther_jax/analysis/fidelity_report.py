"""One call that answers "is the synthetic data good?": `analyze` writes report.json and the PNGs.

For the synthetic data and, as baselines, the explicit augmentations of the real data (additive,
multiplicative and dynamics noise) it measures
- statistical fidelity against the real data (marginal and correlation scores, paper Table 2);
- novelty (minimum distance to the real data) and physical validity (dynamics MSE against the
  MuJoCo simulator) on a random subset, when the environment is supported (paper Figure 5);
- the real data's own dynamics MSE, which should be ~0: if it is not, the environment id does not
  match the one that produced the data and the physical-validity figures mean little;
- compression: floats in the real data against the denoiser's parameter count (paper Table 5);
- terminal consistency, for tasks with a termination rule (hopper, walker2d; `synther_jax.termination`):
  how often synthetic next states fall, how many of those falls are flagged terminal, flags without a
  fall, and rows that start fallen, beside the real data's figures (1 and 0 for the last three, up to
  hopper's clipped velocities).
"""
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from synther_jax.analysis import dynamics, fidelity, novelty, plots
from synther_jax.atomic import write_json
from synther_jax.augment import AUGMENTATIONS, augment
from synther_jax.data.transitions import Transitions
from synther_jax.errors import InvalidDatasetError
from synther_jax.termination import CONSISTENCY_FIGURES, rule_for_env, terminal_consistency

REPORT_FILE = "report.json"
MARGINALS_PNG = "marginals.png"
DISTANCE_VS_DYNAMICS_PNG = "distance_vs_dynamics.png"
COMPRESSION_PNG = "compression.png"


def dimension_names(obs_dim: int, action_dim: int, env_id: Optional[str]) -> List[str]:
    """Names of the row layout [obs, action, reward, next_obs, terminal]."""
    obs = dynamics.observation_names(env_id) if dynamics.supports(env_id) else None
    if obs is None or len(obs) != obs_dim:
        obs = [f"obs[{i}]" for i in range(obs_dim)]
    return (obs + [f"action[{i}]" for i in range(action_dim)] + ["reward"]
            + [f"next {name}" for name in obs] + ["terminal"])


def _subset(data: Transitions, num_rows: int, rng: np.random.Generator) -> Transitions:
    return data.subset(rng.choice(len(data), min(num_rows, len(data)), replace=False))


def analyze(real: Transitions, synthetic: Transitions, env_id: Optional[str], out_dir: str, *,
            denoiser_params: Optional[int] = None, sampler: Optional[dict] = None,
            baselines: Sequence[str] = tuple(AUGMENTATIONS),
            seed: int = 0, fidelity_rows: int = 100_000, physics_rows: int = 10_000,
            correlation_method: str = "spearman", progress: bool = True) -> Dict[str, object]:
    """Measures the synthetic data (and the augmentation baselines) against the real data.

    Args:
      real: the data the generator was trained on.
      synthetic: the generator's samples.
      env_id: the Gymnasium id that produced `real` (e.g. 'Walker2d-v5'); None takes it from
        `real.metadata['env_id']` when the loader recorded it. Physical validity is measured for
        Hopper, Walker2d and HalfCheetah v4/v5 and skipped for anything else.
      out_dir: where report.json and the PNGs go (created if needed).
      denoiser_params: the generator's parameter count, for the compression figure; None skips it.
      sampler: how the samples were drawn (its name, steps and network evaluations per sample), as
        the report's `sampler`; None when not known.
      baselines: names from `synther_jax.augment.AUGMENTATIONS` to measure alongside.
      fidelity_rows: rows per side for the marginal and correlation scores (the paper uses 100K).
      physics_rows: rows per source for novelty and dynamics error (each one is a simulator step).
    Returns:
      The report as a dict (also written to out_dir/report.json).
    """
    if (real.obs_dim, real.action_dim) != (synthetic.obs_dim, synthetic.action_dim):
        raise InvalidDatasetError(f"Real and synthetic transitions differ in shape: obs {real.obs_dim} vs "
                                  f"{synthetic.obs_dim}, actions {real.action_dim} vs {synthetic.action_dim}; compare "
                                  "samples with the dataset their generator was trained on.")
    unknown = set(baselines) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"Unknown baselines {sorted(unknown)}: choose from {sorted(AUGMENTATIONS)}.")
    if env_id is None:
        env_id = (real.metadata or {}).get("env_id")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    timings = {}
    # Every source is measured on a random subset of at most `fidelity_rows` rows (5M synthetic rows
    # would not fit in memory twice); novelty and physics use `physics_rows` of those.
    sources = {"synthetic": _subset(synthetic, fidelity_rows, rng)}
    sources.update({kind: augment(real, kind, seed, len(sources["synthetic"])) for kind in baselines})
    real_rows = real.to_rows()
    names = dimension_names(real.obs_dim, real.action_dim, env_id)
    physics = dynamics.supports(env_id)

    start = time.time()
    results: Dict[str, Dict[str, object]] = {}
    for name, data in sources.items():
        results[name] = fidelity.fidelity(real_rows, data.to_rows(), seed, fidelity_rows, correlation_method)
        ks = np.asarray(results[name]["ks_per_dimension"])
        results[name]["worst_marginals"] = [[names[d], float(ks[d])] for d in np.argsort(-ks)[:5]]
    timings["fidelity_s"] = time.time() - start

    start = time.time()
    scatter = {}
    for name, data in sources.items():
        subset = _subset(data, physics_rows, rng)
        distances = novelty.min_distances(real_rows, subset.to_rows(), progress=progress)
        results[name]["min_distance_mean"] = float(np.mean(distances))
        results[name]["min_distance_median"] = float(np.median(distances))
        if physics:
            errors = dynamics.dynamics_errors(env_id, subset, progress)
            results[name]["dynamics"] = errors.summary()
            keep = errors.restorable
            if np.any(keep):  # a source none of whose rows MuJoCo can restore has no point to draw
                scatter[name] = (distances[keep], errors.dynamics_mse[keep])
    timings["novelty_and_dynamics_s"] = time.time() - start

    report: Dict[str, object] = {
        "env_id": env_id,
        "num_real": len(real),
        "num_synthetic": len(synthetic),
        "sampler": sampler,
        # Falls are rare rows that a small denoiser under-samples, and they decide what an agent learns.
        "real_terminals": int(np.sum(real.terminals > 0.5)),
        "synthetic_terminals": int(np.sum(synthetic.terminals > 0.5)),
        "marginal_score": results["synthetic"]["marginal_score"],
        "correlation_score": results["synthetic"]["correlation_score"],
        "correlation_method": correlation_method,
        "dimension_names": names,
        "sources": results,
    }
    rule = rule_for_env(env_id)
    if rule is not None and rule.obs_dim == real.obs_dim:  # on every row: a fall is rare, and cheap to test
        report["terminal_consistency"] = {"rule": rule.name, "real": terminal_consistency(real, rule),
                                          "synthetic": terminal_consistency(synthetic, rule)}
    if physics:
        real_errors = dynamics.dynamics_errors(env_id, _subset(real, physics_rows, rng), progress)
        report["real_dynamics"] = real_errors.summary()
        report["synthetic_dynamics_mse_mean"] = results["synthetic"]["dynamics"].get("dynamics_mse_mean")

    start = time.time()
    plot_files = [MARGINALS_PNG]
    # The same rows the scores were computed on (same seed), so each panel's KS matches its histograms.
    fidelity_real, fidelity_synthetic = fidelity.paired_subsample(
        real_rows, sources["synthetic"].to_rows(), fidelity_rows, seed)
    shown = real.obs_dim + real.action_dim + 1  # observation, action and reward, as in Figure 7
    plots.plot_marginals(
        fidelity_real[:, :shown], fidelity_synthetic[:, :shown], names[:shown],
        results["synthetic"]["ks_per_dimension"][:shown], os.path.join(out_dir, MARGINALS_PNG),
        title=f"{env_id or 'data'}: synthetic (blue) vs real (orange) marginals; marginal score "
              f"{report['marginal_score']:.3f}, correlation score {report['correlation_score']:.3f}")
    if scatter:
        plot_files.append(DISTANCE_VS_DYNAMICS_PNG)
        plots.plot_distance_vs_dynamics(scatter, os.path.join(out_dir, DISTANCE_VS_DYNAMICS_PNG),
                                        title=f"{env_id}: novelty vs physical validity")
    if denoiser_params is not None:
        row_dim = real_rows.shape[1]
        report["compression"] = {
            "row_dim": row_dim,
            "floats_in_real_data": len(real) * row_dim,
            "denoiser_params": int(denoiser_params),
            "compression_ratio": len(real) * row_dim / denoiser_params,
        }
        plot_files.append(COMPRESSION_PNG)
        plots.plot_compression(len(real), row_dim, int(denoiser_params), os.path.join(out_dir, COMPRESSION_PNG),
                               title=f"{env_id or 'data'}: data compression", num_synthetic=len(synthetic))
    timings["plots_s"] = time.time() - start
    report["plots"] = plot_files
    report["timings"] = timings
    write_json(os.path.join(out_dir, REPORT_FILE), report)  # atomic: launch.offline takes it as the stage's end
    return report


def headline_figures(report: Dict[str, object]) -> Dict[str, object]:
    """The figures benchmarks and papers quote from a report: marginal and correlation scores, the
    synthetic rows' dynamics error (None where the simulator check does not apply), terminal counts,
    the median distance to the real data, and the terminal consistency of real and synthetic data
    (`real_falls`, `synthetic_falls_flagged`, ...; None for a task without a termination rule)."""
    synthetic = report["sources"]["synthetic"]
    dynamics = synthetic.get("dynamics") or {}
    consistency = report.get("terminal_consistency") or {}
    return {"marginal_score": report["marginal_score"], "correlation_score": report["correlation_score"],
            "dynamics_mse_mean": dynamics.get("dynamics_mse_mean"),
            "dynamics_mse_median": dynamics.get("dynamics_mse_median"),
            "real_terminals": report["real_terminals"], "synthetic_terminals": report["synthetic_terminals"],
            "min_distance_median": synthetic.get("min_distance_median"),
            **{f"{source}_{figure}": (consistency.get(source) or {}).get(figure)
               for source in ("real", "synthetic") for figure in CONSISTENCY_FIGURES}}
