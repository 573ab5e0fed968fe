"""An emulated arm64 device: a Debian arm64 userland run under qemu user-mode emulation.

A workstation's x86-64 LiteRT and ONNX Runtime run other kernels than an arm64 device's (a
Raspberry Pi, a Jetson, a phone). This package builds, once, a Debian bookworm arm64 userland
(``debootstrap --arch=arm64`` + ``qemu-user-static`` through binfmt_misc) with a venv holding the
arm64 wheels of numpy, ai-edge-litert, onnxruntime and this project's light install, and runs
commands inside it (chroot in a private mount namespace: /proc and the binds vanish with it).
One module per job:

- :mod:`~devices.emulated.userland`: the cache folder and what goes in it;
- :mod:`~devices.emulated.host`: what the host lacks, qemu's binfmt_misc entry, the mirror;
- :mod:`~devices.emulated.build`: building the userland (:func:`setup_emulated_arm64`);
- :mod:`~devices.emulated.inside`: running inside it (:func:`run_in_userland`, validate);
- :mod:`~devices.emulated.compare`: ``--device emulated:arm64``, validated there and here
  on the same sample, the two devices' outputs compared.

It needs root on a Linux host with ``apt-get install debootstrap qemu-user-static``, so the
examples are not run as doctests (tests/test_emulated_arm64.py runs them where it can):

>>> userland = setup_emulated_arm64()                                    # doctest: +SKIP
>>> run_in_userland(userland, ["python", "-c", "import platform; print(platform.machine())"]
...                 ).stdout                                             # doctest: +SKIP
'aarch64\\n'
"""

from devices.emulated.build import setup_emulated_arm64
from devices.emulated.host import binfmt_state, check_host, host_debian_mirror, host_problems
from devices.emulated.inside import check_ready, run_in_userland, validate_in_userland
from devices.emulated.userland import SETUP_COMMAND, Userland, default_dir

__all__ = [
    "SETUP_COMMAND",
    "Userland",
    "binfmt_state",
    "check_host",
    "check_ready",
    "default_dir",
    "host_debian_mirror",
    "host_problems",
    "run_in_userland",
    "setup_emulated_arm64",
    "validate_in_userland",
]
