"""imrepro: the library behind the Instruction Modelling reproduction workflow.

Shi et al., "Instruction Tuning With Loss Over Instructions", NeurIPS 2024.
Modules are small and single-purpose; the Snakemake rules call them through
the thin CLI programs in ``workflow_scripts/``.
"""

__version__ = "0.1.0"
