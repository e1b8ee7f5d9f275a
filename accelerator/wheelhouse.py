"""The wheels an accelerator node without network needs to run the benchmarks beside its own JAX.

    python -m accelerator.wheelhouse --python=3.12 --out=wheelhouse \
        --have=jax,jaxlib,flax,optax,chex,orbax-checkpoint,numpy,scipy,h5py,matplotlib,tqdm,absl-py,protobuf

Run on a machine that reaches the package registry. `--have` names what the node's Python already
has (its site JAX, say); those and everything they depend on are left out. The rest of what the
benchmark steps import is resolved by uv and downloaded by pip as binary wheels for the target
Python on Linux x86-64, in sets, smallest first, each adding what further runbook steps need:
  learners    distrax and TensorFlow Probability: the learners' update rates and 1M TD3+BC updates;
  pipelines   Gymnasium with MuJoCo, ml_collections and tensorboardX: the offline pipeline and the
              online retrain cycle.
Versions are those of requirements.txt (tested together); each set's wheels and sizes are printed.
On the node (see README, "GPU or TPU node without network"):

    pip install --no-index --no-deps --target=SITE wheelhouse/*.whl && PYTHONPATH=SITE python -m accelerator.runbook ...

(or `bash accelerator/booking.sh`, which does that, runs the runbook and copies its report).
"""
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Sequence, Tuple

from absl import flags

from launch import boundary

SETS = (("learners", ("distrax", "tfp-nightly")),
        ("pipelines", ("gymnasium[mujoco]", "mujoco", "ml-collections", "tensorboardX")))
# pip matches --platform tags exactly: every glibc a manylinux wheel may declare, oldest first.
PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 41)))
REQUIREMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "requirements.txt")

FLAGS = flags.FLAGS


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503), extras dropped."""
    return name.split("[")[0].strip().lower().replace("_", "-").replace(".", "-")


def pinned(names: Sequence[str]) -> List[str]:
    """`names` with the versions requirements.txt pins (extras kept), e.g. gymnasium[mujoco]==1.4.0."""
    pins = {}
    with open(REQUIREMENTS) as file:
        for line in file:
            requirement = line.split("#")[0].strip()
            if "==" in requirement:
                name, version = requirement.split("==")
                pins[canonical(name)] = version.strip()
    return [f"{name}=={pins[canonical(name)]}" if canonical(name) in pins else name for name in names]


def target_options(python: str) -> List[str]:
    return ["--only-binary=:all:", f"--python-version={python}", *(f"--platform={p}" for p in PLATFORMS)]


def pip(arguments: Sequence[str]) -> None:
    """Runs pip; a failure ends the program with pip's last error line."""
    result = subprocess.run([sys.executable, "-m", "pip", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or \
            result.stderr.strip().splitlines()[-1:] or ["no output"]
        boundary.fail(f"pip {arguments[0]} failed: {errors[-1]}")


def resolve(requirements: Sequence[str], python: str) -> Dict[str, str]:
    """{name: version} of everything `requirements` install on an empty target Python (nothing downloaded).

    uv resolves from the registry's metadata; pip's resolver downloads each candidate wheel instead
    (jaxlib's are about 90 MB, and it backtracks through several), minutes where uv takes seconds."""
    result = subprocess.run([sys.executable, "-m", "uv", "pip", "compile", "-", "--quiet", "--no-header",
                             "--no-annotate", "--only-binary=:all:", f"--python-version={python}",
                             f"--python-platform=x86_64-{PLATFORMS[-1].removesuffix('_x86_64')}"],
                            input="\n".join(requirements), capture_output=True, text=True)
    if result.returncode != 0:
        errors = result.stderr.strip().splitlines() or ["no output"]
        boundary.fail(f"uv could not resolve {', '.join(requirements)} for Python {python}: {errors[-1].strip()}")
    pins = (line.split("==") for line in result.stdout.splitlines() if "==" in line)
    return {canonical(name): version.strip() for name, version in pins}


def plan(have: Sequence[str], python: str) -> List[Tuple[str, Dict[str, str]]]:
    """Per set, in order: the distributions it adds to what `have` and the sets before it bring."""
    present = resolve(have, python)
    sets, wanted = [], list(have)
    for name, packages in SETS:
        wanted += pinned(packages)
        resolved = resolve(wanted, python)
        sets.append((name, {k: v for k, v in resolved.items() if k not in present}))
        present.update(resolved)
    return sets


def main(argv):
    del argv
    os.makedirs(FLAGS.out, exist_ok=True)
    total = count = 0
    for name, distributions in plan(FLAGS.have, FLAGS.python):
        if distributions:  # pip skips a wheel already in the folder
            pip(["download", "--no-deps", "--quiet", f"--dest={FLAGS.out}", *target_options(FLAGS.python),
                 *(f"{k}=={v}" for k, v in sorted(distributions.items()))])
        wheels = [wheel for wheel in os.listdir(FLAGS.out)
                  if wheel.endswith(".whl") and canonical(wheel.split("-")[0]) in distributions]
        sizes = {wheel: os.path.getsize(os.path.join(FLAGS.out, wheel)) for wheel in wheels}
        total, count = total + sum(sizes.values()), count + len(wheels)
        print(f"{name}: {len(wheels)} wheels, {sum(sizes.values()) / 2**20:.1f} MiB "
              f"(running total {total / 2**20:.1f} MiB)")
        for wheel, size in sorted(sizes.items(), key=lambda item: -item[1]):
            print(f"  {size / 2**20:6.1f} MiB  {wheel}")
    print(f"{count} wheels in {FLAGS.out}, {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    flags.DEFINE_string("python", "3.12", "The target node's Python version, e.g. 3.12.")
    flags.DEFINE_list("have", [], "Distributions the node's Python already has; they and their dependencies are "
                                  "left out.")
    flags.DEFINE_string("out", None, "Folder for the wheels.")
    flags.mark_flag_as_required("out")
    boundary.run(main, resumes=False)
