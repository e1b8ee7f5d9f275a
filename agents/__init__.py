"""The learners, one per module. `OFFLINE_LEARNERS` names the offline ones for configs and launchers:
config name -> (module, its hyperparameter dataclass)."""
from agents import edac, iql, td3_bc

OFFLINE_LEARNERS = {
    "td3_bc": (td3_bc, td3_bc.TD3BCConfig),
    "iql": (iql, iql.IQLConfig),
    "edac": (edac, edac.EDACConfig),
}
