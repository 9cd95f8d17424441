"""The OS-boundary fault shim loaded into the agent subprocess (see bwc_fault_shim.py)."""
