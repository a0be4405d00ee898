"""The names the workflow's rules need, in one torch-free module (imported by ``rules/common.smk``).

* benchmark names: re-exported from :mod:`imrepro.eval.catalogue`, where they are defined;
* training setting keys (:data:`TRAIN_SETTING_KEYS`): the config fields of
  :class:`imrepro.train.settings.TrainSettings`;
* table keys and their file stems under ``results/tables/`` (:data:`TABLE_STEMS`) and figure names
  (:data:`FIGURES`): defined here and read by :mod:`imrepro.report.tables` and
  :mod:`imrepro.report.figures`, so a table or figure the rules build is one the report can draw.

Importing this module must not import torch (``tests/test_workflow_config.py`` checks it): the
Snakefile parses it on every invocation, dry runs included.
"""

from __future__ import annotations

from imrepro.eval.catalogue import (
    ALL_BENCHMARKS,
    ALPACA_EVAL_REFERENCE,
    ANALYSES,
    JUDGED,
    LM_EVAL_TASKS,
    NEEDS_TRAINING_SET,
)
from imrepro.train.settings import CONFIG_KEYS as TRAIN_SETTING_KEYS  # the training: keys a job receives

# table key -> file stem of results/tables/<stem>.{csv,md}
TABLE_STEMS: dict[str, str] = {
    "table1": "table1_main_results",
    "table2": "table2_regeneration_bleu",
    "table3": "table3_kl_regularised_it",
    "table4": "table4_im_neftune",
    "table5": "table5_dataset_stats_vs_paper",
    "table7": "table7_kl_lambda",
}
TABLE_OF_STEM: dict[str, str] = {stem: key for key, stem in TABLE_STEMS.items()}
# results/figures/<name>.{png,pdf}
FIGURES: tuple[str, ...] = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "fig10", "fig11", "forest",
                             "fig_sweep", "fig_weight_grid")  # the last three: not in the paper
COMPARISON_FIGURES: tuple[str, ...] = ("forest", "fig_sweep", "fig_weight_grid")  # they read comparisons.csv

__all__ = ["ALL_BENCHMARKS", "ALPACA_EVAL_REFERENCE", "ANALYSES", "COMPARISON_FIGURES", "FIGURES", "JUDGED",
           "LM_EVAL_TASKS", "NEEDS_TRAINING_SET", "TABLE_OF_STEM", "TABLE_STEMS", "TRAIN_SETTING_KEYS"]
