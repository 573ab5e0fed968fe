"""Devices: profiles (TOML data files) and the ways to reach a device (local process, SSH,
an emulated arm64 userland: see :mod:`devices.emulated`).

May import: ``edge_transfer.core``, ``runtime``, ``data``, ``train``, ``deploy`` (the bundle)
and ``exporters``; never the pipeline, reports or commands (tests/test_layers.py).

>>> from devices import list_profiles, load_profile
>>> len(list_profiles()) >= 6
True

Validating is not run as a doctest (it needs a bundle and a device; tests/test_ssh.py
starts both):

>>> validate_bundle("bundles/target", device="ssh://pi@raspberrypi.local",
...                 profile="raspberry-pi-5")                      # doctest: +SKIP
"""

from devices.checks import budget_checks
from devices.profile import DeviceProfile, list_profiles, load_profile
from devices.validate import validate_bundle

__all__ = ["DeviceProfile", "budget_checks", "list_profiles", "load_profile", "validate_bundle"]
