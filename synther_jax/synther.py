"""SynthER for your own agent: fit the diffusion model to your transitions, sample as many as you like.

    synther = SynthER.fit(transitions, DiffusionConfig(num_train_steps=20_000), seed=0)
    synthetic = synther.sample(jax.random.PRNGKey(1), 1_000_000)   # a Transitions, like the input
    synther.save("models/hopper")
    synther = SynthER.load("models/hopper")

Guided (classifier-free guidance, as PGR): fit with one condition value per transition, then
sample with targets in the condition's own units and a guidance scale w:

    synther = SynthER.fit(transitions, config, condition=relevance)
    targets = top_fraction_prompts(key, relevance, 1_000_000, top_frac=0.1)
    synthetic = synther.sample(key, 1_000_000, condition=targets, guidance=2.0)

Synthetic terminals are made one of three ways (`terminals`): "modelled", a generated column
thresholded at `terminal_threshold` (the paper's); "env_rule", the task's termination rule applied to
each synthetic next observation, a rule name ("hopper", "walker2d") or a function given as
`terminal_rule` (the denoiser then models no terminal column); "none", every terminal 0:

    synther = SynthER.fit(transitions, config, terminals="env_rule", terminal_rule="walker2d")

A function is not saved: `SynthER.load(directory, terminal_rule=function)` takes it again.

Distilled into a sampler of 1, 2 or 4 network evaluations (instead of the 255 of 128 Heun steps),
on the data it was fitted to; `sample`, `save` and `load` then use the distilled sampler:

    fast = synther.distill(transitions, num_steps=4)

The data may be a `Transitions`, a mapping with its five arrays (observations, actions, rewards,
next_observations, terminals; a replay buffer's contents), or SynthER's flat (N, 2o+a+2) rows with
`obs_dim` and `action_dim` ((N, 2o+a+1) unless terminals are modelled: no terminal column). This is
the launchers' own machinery (`train_diffusion`, `distill`, `iterate_samples`,
`Transitions.to_rows/from_rows`) behind five calls; nothing here reads flags or files beyond `save` and `load`.
"""
import dataclasses
import os
from typing import Mapping, Optional, Union

import jax
import numpy as np

from synther_jax.atomic import read_json, write_json
from synther_jax.checkpoint import Checkpointer
from synther_jax.data.transitions import KEYS, Transitions
from synther_jax.diffusion import Diffusion, DiffusionConfig, DistillConfig, distill, generate, train_diffusion
from synther_jax.diffusion.storage import model_template
from synther_jax.termination import (RULES, HealthRule, Rule, check_terminals, has_terminal_column,
                                     recorded_terminals, resolve_rule, synthetic_transitions)

Data = Union[Transitions, Mapping[str, np.ndarray], np.ndarray]
LAYOUT_FILE = "synther.json"


def _transitions(data: Data, obs_dim: Optional[int], action_dim: Optional[int], terminal_column: bool) -> Transitions:
    """`data` (see the module docstring) as Transitions."""
    if isinstance(data, Transitions):
        return data
    if isinstance(data, np.ndarray):
        if obs_dim is None or action_dim is None:
            raise ValueError("Rows need obs_dim and action_dim to be split into transitions; pass both.")
        return Transitions.from_rows(np.asarray(data, np.float32), obs_dim, action_dim, terminal_column, None)
    missing = [key for key in KEYS if key not in data]
    if missing:
        raise ValueError(f"The data lacks {missing}; pass a Transitions, rows, or a mapping with {list(KEYS)}.")
    return Transitions(*(np.asarray(data[key]) for key in KEYS))


def _checked_rule(terminals: str, terminal_rule: Union[str, Rule, None]) -> Optional[Rule]:
    """The termination rule, resolved from its name, if `terminals` and `terminal_rule` go together."""
    check_terminals(terminals)
    if (terminal_rule is None) == (terminals == "env_rule"):
        raise ValueError(f"terminals={terminals!r} with terminal_rule={terminal_rule!r}: a terminal_rule (one of "
                         f"{sorted(RULES)} or a function) goes with terminals='env_rule', and only there.")
    return None if terminal_rule is None else resolve_rule(terminal_rule)


@dataclasses.dataclass(frozen=True)
class SynthER:
    """A diffusion model of transitions and the row layout it was trained on."""

    model: Diffusion
    obs_dim: int
    action_dim: int
    terminals: str = "modelled"  # how synthetic terminals are made: "modelled", "env_rule" or "none"
    terminal_threshold: Optional[float] = 0.5  # "modelled": generated terminals above it become 1; None keeps raw
    terminal_rule: Union[str, Rule, None] = None  # "env_rule": a rule name or next_observations -> bool array

    def __post_init__(self):
        object.__setattr__(self, "terminal_rule", _checked_rule(self.terminals, self.terminal_rule))

    @classmethod
    def fit(cls, data: Data, config: DiffusionConfig = DiffusionConfig(), seed: int = 0, *,
            obs_dim: Optional[int] = None, action_dim: Optional[int] = None, terminals: str = "modelled",
            terminal_threshold: Optional[float] = 0.5, terminal_rule: Union[str, Rule, None] = None,
            workdir: Optional[str] = None, progress: bool = True, condition: Optional[np.ndarray] = None,
            **unknown) -> "SynthER":
        """Trains a denoiser on `data` (see the module docstring) with `config`'s settings (the
        paper's by default). With a `workdir`, training checkpoints there and resumes from it.

        `condition`, one value per transition, trains a guided model: the config's `conditioning`,
        or "add" (the condition embedding added to the noise embedding) if the config has none.
        """
        if "modelled_terminals" in unknown:
            raise TypeError("modelled_terminals was replaced by terminals: pass terminals='modelled', 'env_rule' or "
                            "'none'.")
        if unknown:
            raise TypeError(f"SynthER.fit() got unexpected keyword arguments {sorted(unknown)}.")
        terminal_rule = _checked_rule(terminals, terminal_rule)  # before training, not after
        column = has_terminal_column(terminals)
        data = _transitions(data, obs_dim, action_dim, column)
        rows = data.to_rows(column)
        skip_norm_dims = (rows.shape[1] - 1,) if column else ()  # the 0/1 terminal stays raw
        if condition is not None and not config.conditional:
            config = dataclasses.replace(config, conditioning="add")
        model = train_diffusion(rows, config, jax.random.PRNGKey(seed), skip_norm_dims, workdir=workdir,
                                progress=progress, condition=condition)
        return cls(model, data.obs_dim, data.action_dim, terminals, terminal_threshold, terminal_rule)

    def distill(self, data: Data, num_steps: int = 4, config: DistillConfig = DistillConfig(), seed: int = 0, *,
                workdir: Optional[str] = None, progress: bool = True) -> "SynthER":
        """This model distilled into a sampler of `num_steps` network evaluations (1, 2 or 4) on the
        `data` it was fitted to (`config`'s other settings; `synther_jax.diffusion.distillation`).
        The returned model's `sample` uses it, and `save`/`load` keep it. With a `workdir`, the
        distillation checkpoints there and resumes from it."""
        column = has_terminal_column(self.terminals)
        rows = _transitions(data, self.obs_dim, self.action_dim, column).to_rows(column)
        if rows.shape[1] != self.model.dim:
            raise ValueError(f"The data's rows have {rows.shape[1]} columns and this model's {self.model.dim}: "
                             "distil on the data the model was fitted to.")
        config = dataclasses.replace(config, num_steps=num_steps)
        model = distill(self.model, rows, config, jax.random.PRNGKey(seed), workdir=workdir, progress=progress)
        return dataclasses.replace(self, model=model)

    def sample(self, key: jax.Array, num: int, progress: bool = False, *, condition=None,
               guidance: float = 1.0) -> Transitions:
        """`num` synthetic transitions, deterministic for `key`, generated in the config's chunks.

        A guided model takes `condition`: one target per sample (num,), or one for all, in the
        condition's own units, and the guidance scale w (0: unconditional, 1: conditional, > 1:
        further towards the targets). Without a condition it samples unconditionally.
        """
        if num <= 0:
            raise ValueError(f"Ask for a positive number of samples, got {num}.")
        if condition is not None:
            condition = np.broadcast_to(np.asarray(condition, np.float32), (num,))
        rows = generate(self.model, num, key, progress=progress, condition=condition, guidance=guidance)
        return synthetic_transitions(rows, self.obs_dim, self.action_dim, self.terminals, self.terminal_threshold,
                                     self.terminal_rule)

    def save(self, directory: str) -> None:
        """Writes the model (EMA weights, Fourier frequencies, normaliser) and its layout to `directory`;
        a model saved there before is replaced (as a newer checkpoint, so a crash keeps one whole model).
        A named termination rule is saved by its name; a function is not saved (`load` asks for it)."""
        checkpointer = Checkpointer(os.path.join(directory, "model"), max_to_keep=1)
        latest = checkpointer.latest_step()
        checkpointer.save(0 if latest is None else latest + 1, self._tree(self.model))
        checkpointer.close()
        write_json(os.path.join(directory, LAYOUT_FILE), {
            "obs_dim": self.obs_dim, "action_dim": self.action_dim, "terminals": self.terminals,
            "terminal_threshold": self.terminal_threshold, "terminal_rule": self._rule_name(), "dim": self.model.dim,
            "diffusion": dataclasses.asdict(self.model.config),
            "distilled": None if self.model.distilled is None else dataclasses.asdict(self.model.distilled)})

    @classmethod
    def load(cls, directory: str, terminal_rule: Union[str, Rule, None] = None) -> "SynthER":
        """The model that `save(directory)` wrote. A model fitted with a termination rule function
        takes it again as `terminal_rule` (a function is not saved)."""
        layout = read_json(os.path.join(directory, LAYOUT_FILE), None)
        if layout is None:
            raise FileNotFoundError(f"No SynthER model in {directory!r} (missing {LAYOUT_FILE}); write one with "
                                    "SynthER.save.")
        terminals = recorded_terminals(layout)
        if terminal_rule is not None and terminals != "env_rule":
            raise ValueError(f"The model in {directory!r} makes terminals {terminals!r}, not by a rule: load it "
                             "without terminal_rule.")
        if terminal_rule is None:
            terminal_rule = layout.get("terminal_rule")
        if terminals == "env_rule" and terminal_rule is None:
            raise ValueError(f"The model in {directory!r} labels terminals with a function, which is not saved: pass "
                             "it again, SynthER.load(directory, terminal_rule=function).")
        config, dim = DiffusionConfig(**layout["diffusion"]), layout["dim"]
        template = model_template(config, dim)
        restored = Checkpointer(os.path.join(directory, "model")).restore_latest(cls._tree(template))
        if restored is None:
            raise FileNotFoundError(f"No model checkpoint under {os.path.join(directory, 'model')!r}.")
        tree = restored[1]
        distilled = layout.get("distilled")
        model = Diffusion(config, dim, tree["params"], tree["constants"], tree["normalizer"],
                          tree.get("condition_normalizer"), None if distilled is None else DistillConfig(**distilled))
        return cls(model, layout["obs_dim"], layout["action_dim"], terminals, layout["terminal_threshold"],
                   terminal_rule)

    def _rule_name(self) -> Optional[str]:
        """The termination rule's name in `RULES`; None for a function of the caller's (or no rule)."""
        rule = self.terminal_rule
        return rule.name if isinstance(rule, HealthRule) and RULES.get(rule.name) == rule else None

    @staticmethod
    def _tree(model: Diffusion) -> dict:
        tree = {"params": model.params, "constants": model.constants, "normalizer": model.normalizer}
        if model.condition_normalizer is not None:
            tree["condition_normalizer"] = model.condition_normalizer
        return tree
