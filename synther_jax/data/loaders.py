"""`load_dataset(id_or_path)`: every dataset this project reads, as flattened `Transitions`.

What the argument may be, tried in this order:
- a path to a file: `.npz` is a synthetic dataset (`synthetic.py`), `.hdf5`/`.h5` D4RL's flat
  layout (`d4rl_hdf5.py`);
- `bundled/<name>`: a dataset shipped in `synther_jax/data/bundled/` (D4RL layout, gzip), which
  needs no network; `DEFAULT_DATASET` is the quick start's;
- a D4RL name without a slash (`walker2d-medium-replay-v2`, `maze2d-umaze-v1`): the file from D4RL's
  download cache, `$D4RL_DATASET_DIR` or else `~/.d4rl/datasets`;
- a Minari id with a namespace (`mujoco/walker2d/medium-v0`): the local Minari store,
  `$MINARI_DATASETS_PATH` or else `~/.minari/datasets`; downloaded only with `download=True`
  (`minari_store.py`, which also reads Minari's `D4RL/pointmaze/*-v2` as maze2d data).

Episodes are flattened with the original's rules (`flatten.py`; `keep_timeouts=True` keeps
time-limit steps as non-terminal transitions). The result's `metadata["env_id"]` is the Gymnasium
id to evaluate on when known; when it is (or `env_id` is passed), the data's observation and action
dimensions are checked against that environment.
"""
import glob
import os
import re
from typing import Optional

from synther_jax.data.d4rl_hdf5 import d4rl_file_name, read_d4rl_hdf5
from synther_jax.data.env_check import check_fits_env
from synther_jax.data.minari_store import load_minari
from synther_jax.data.synthetic import read_synthetic, read_synthetic_metadata
from synther_jax.data.transitions import Transitions
from synther_jax.errors import DatasetNotFoundError, InvalidDatasetError, MissingExtraError, UnknownEnvironmentError

BUNDLED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled")
DEFAULT_DATASET = "bundled/walker2d-medium-replay"


def d4rl_dataset_dir() -> str:
    """D4RL's download cache: `$D4RL_DATASET_DIR`, else `~/.d4rl/datasets` (as D4RL itself uses)."""
    return os.path.expanduser(os.environ.get("D4RL_DATASET_DIR", os.path.join("~", ".d4rl", "datasets")))


def bundled_names():
    """The datasets shipped with the package, as `bundled/<name>` ids."""
    paths = glob.glob(os.path.join(BUNDLED_DIR, "*.hdf5"))
    return sorted(f"bundled/{os.path.basename(path)[:-len('.hdf5')]}" for path in paths)


_TASK = re.compile(r"(walker2d|hopper|halfcheetah)-(medium-replay|medium-expert|full-replay|random|medium|expert)"
                   r"|(?:maze2d|pointmaze)-(umaze|medium|large)")


def dataset_task(id_or_path: str) -> Optional[str]:
    """The D4RL task a dataset holds, as `<env>-<level>` (`hopper-medium-replay`) or `maze2d-<maze>`,
    read from its id or file name; a synthetic `.npz` answers for the dataset it was made from. None
    when the name does not say. Per-dataset hyperparameters (CORL's, the paper's denoiser widths)
    are looked up by this name, so they follow the data actually loaded, whatever the config is called.
    """
    id_or_path = os.fspath(id_or_path)
    if id_or_path.endswith(".npz") and os.path.isfile(id_or_path):
        source = read_synthetic_metadata(id_or_path).get("source_dataset")
        return dataset_task(source) if source else None
    name = os.path.basename(id_or_path) if os.path.isfile(id_or_path) else id_or_path
    match = _TASK.search(name.lower().replace("/", "-").replace("_", "-"))
    if match is None:
        return None
    return f"maze2d-{match.group(3)}" if match.group(3) else match.group(0)  # Minari's pointmaze is maze2d


def load_dataset(id_or_path: str = DEFAULT_DATASET, keep_timeouts: bool = False, download: bool = False,
                 env_id: Optional[str] = None) -> Transitions:
    """Loads a dataset (forms in the module docstring) as flattened `Transitions`.

    `env_id` names the environment the data belongs to when the dataset does not say (e.g. an
    original SynthER `.npz`); it overrides the dataset's own. Raises DatasetNotFoundError (nothing
    under that id), InvalidDatasetError (corrupt file, bad values, dims that do not fit the
    environment) or UnknownEnvironmentError (an `env_id` we cannot build).
    """
    id_or_path = os.fspath(id_or_path)
    try:
        transitions = _read(id_or_path, keep_timeouts, download)
        if env_id is not None:
            transitions.metadata["env_id"] = env_id
            check_fits_env(transitions, env_id)
        elif transitions.metadata.get("env_id") is not None:
            try:
                check_fits_env(transitions, transitions.metadata["env_id"])
            except (UnknownEnvironmentError, MissingExtraError):
                pass  # Made on an environment not installed here (or no Gymnasium): nothing to check against.
    except InvalidDatasetError as error:  # Transitions' own checks do not know the dataset's name
        if id_or_path in str(error):
            raise
        raise InvalidDatasetError(f"{id_or_path}: {error}") from error
    return transitions


def _read(id_or_path: str, keep_timeouts: bool, download: bool) -> Transitions:
    """The dataset's transitions, without the environment check."""
    if os.path.isfile(id_or_path):
        if id_or_path.endswith(".npz"):
            transitions = read_synthetic(id_or_path)
        elif id_or_path.endswith((".hdf5", ".h5")):
            transitions = read_d4rl_hdf5(id_or_path, keep_timeouts)
        else:
            raise InvalidDatasetError(f"{id_or_path} is neither a synthetic .npz nor a D4RL .hdf5 file.")
    elif id_or_path.startswith("bundled/"):
        path = os.path.join(BUNDLED_DIR, id_or_path[len("bundled/"):] + ".hdf5")
        if not os.path.isfile(path):
            raise DatasetNotFoundError(f"No bundled dataset {id_or_path!r}; bundled ones: {bundled_names()}.")
        transitions = read_d4rl_hdf5(path, keep_timeouts)
        transitions.metadata["source"] = id_or_path
    elif id_or_path.endswith((".npz", ".hdf5", ".h5")) or os.path.isdir(id_or_path):
        raise DatasetNotFoundError(f"No dataset file at {os.path.abspath(id_or_path)}.")
    elif "/" not in id_or_path:
        path = os.path.join(d4rl_dataset_dir(), d4rl_file_name(id_or_path)) if "-v" in id_or_path else None
        if path is None or not os.path.isfile(path):
            raise DatasetNotFoundError(
                f"{id_or_path!r} is not a file, a bundled dataset ({bundled_names()}) or a Minari id "
                f"(namespace/name-vN). As a D4RL name, its file would be {path or '<name>-vN'} (set D4RL_DATASET_DIR "
                "to look elsewhere): download it from D4RL's dataset server, or pass the file's path.")
        transitions = read_d4rl_hdf5(path, keep_timeouts)
    else:
        transitions = load_minari(id_or_path, keep_timeouts, download)
    return transitions
