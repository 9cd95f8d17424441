"""Loaded by the interpreter at start-up when ``PYTHONPATH`` names this directory: installs the
fault shim if ``BWC_FAULT_SHIM`` names its configuration (see ``bwc_fault_shim``)."""

import bwc_fault_shim

bwc_fault_shim.install_from_env()
