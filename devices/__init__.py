"""Devices: where a bundle runs (the local process, an SSH host, an emulated arm64 userland).

See :mod:`devices.emulated` for the Debian arm64 userland under qemu user-mode emulation.
"""
