"""The learners, one per module. `OFFLINE_LEARNERS` names the offline ones for configs and launchers:
config name -> (module, its hyperparameter dataclass); `PIXEL_LEARNERS` the same for the pixel ones."""
from agents import drqbc, edac, iql, pixel_bc, td3_bc

OFFLINE_LEARNERS = {
    "td3_bc": (td3_bc, td3_bc.TD3BCConfig),
    "iql": (iql, iql.IQLConfig),
    "edac": (edac, edac.EDACConfig),
}
PIXEL_LEARNERS = {
    "drqbc": (drqbc, drqbc.DrQBCConfig),
    "bc": (pixel_bc, pixel_bc.PixelBCConfig),
}
