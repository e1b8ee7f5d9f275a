"""The learners, one per module. `OFFLINE_LEARNERS` names the offline ones for configs and launchers:
config name -> (module, its hyperparameter dataclass); `PIXEL_LEARNERS` the same for the pixel ones.

Both tables are built on first use (PEP 562), so `from agents import sac` imports SAC alone: the
offline learners bring distrax (and TensorFlow Probability), the pixel learners their conv nets."""
import importlib

_TABLES = {
    "OFFLINE_LEARNERS": {"td3_bc": ("td3_bc", "TD3BCConfig"), "iql": ("iql", "IQLConfig"),
                         "edac": ("edac", "EDACConfig")},
    "PIXEL_LEARNERS": {"drqbc": ("drqbc", "DrQBCConfig"), "bc": ("pixel_bc", "PixelBCConfig")},
}


def __getattr__(name: str):
    if name not in _TABLES:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    table = {}
    for key, (module_name, config_name) in _TABLES[name].items():
        module = importlib.import_module(f"agents.{module_name}")
        table[key] = (module, getattr(module, config_name))
    globals()[name] = table
    return table
