"""Every file and folder a run directory holds, by name: the one place that names them.

What a run leaves in its directory is hymtl's artifacts, then Hydra's own files, which Hydra
writes for every invocation before hymtl's code runs. split.csv and the checkpoints are written
while the run trains; the final artifacts once, after the last epoch, summary.json last of them.
"""

from __future__ import annotations

# Written while the run trains.
METRICS_FILE = "metrics.csv"  # one row per epoch (run.metrics.MetricsLog)
# split.csv is written before the first epoch: which image plays which role (hymtl/data/splits.py).
SPLIT_FILE = "split.csv"
LAST_CHECKPOINT = "last.pt"  # the latest epoch's state: what resume= continues
BEST_CHECKPOINT = "best.pt"  # the weights of the selected epoch
CHECKPOINTS = (BEST_CHECKPOINT, LAST_CHECKPOINT)

# The final artifacts.
VAL_PREDICTIONS_FILE = "val_predictions.csv"
TEST_PREDICTIONS_FILE = "test_predictions.csv"  # evaluation=holdout or kfold only
CALIBRATION_PLOT = "calibration.png"
CURVES_PLOT = "curves.png"
CONFUSION_MATRIX_PLOT = "confusion_matrix.png"
PREDICTIONS_PLOT = "predictions.png"
ERRORS_PLOT = "errors.png"
SUMMARY_FILE = "summary.json"
FINAL_ARTIFACTS = (
    VAL_PREDICTIONS_FILE,
    TEST_PREDICTIONS_FILE,
    CALIBRATION_PLOT,
    CURVES_PLOT,
    CONFUSION_MATRIX_PLOT,
    PREDICTIONS_PLOT,
    ERRORS_PLOT,
    SUMMARY_FILE,
)
# The pictures logger=tensorboard shows as images.
TRACKED_PLOTS = (CURVES_PLOT, CONFUSION_MATRIX_PLOT, PREDICTIONS_PLOT, ERRORS_PLOT)

# Trackers' folders.
TENSORBOARD_DIR = "tensorboard"  # logger=tensorboard's event files (hymtl/tracking/)
# logger=mlflow's local artifact store, beside its database: copies of run files, not runs.
MLFLOW_ARTIFACTS_DIR = "mlruns"

# Hydra's own.
HYDRA_DIR = ".hydra"
HYDRA_CONFIG = "config.yaml"  # in HYDRA_DIR: the run's composed config
TRAIN_LOG = "train.log"

ARTIFACT_FILES = (METRICS_FILE, SPLIT_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT) + FINAL_ARTIFACTS
ARTIFACT_FILES += (TENSORBOARD_DIR,)
RUN_FILES = ARTIFACT_FILES + (HYDRA_DIR, TRAIN_LOG)

# Every file a completed run of the reference protocol leaves (besides .hydra/ and train.log):
# what run.artifacts.check_run_dir requires, in the order it names the missing ones.
RUN_ARTIFACTS = [
    METRICS_FILE,
    SPLIT_FILE,
    SUMMARY_FILE,
    VAL_PREDICTIONS_FILE,
    CALIBRATION_PLOT,
    CURVES_PLOT,
    CONFUSION_MATRIX_PLOT,
    PREDICTIONS_PLOT,
    ERRORS_PLOT,
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
]

# Beside the run's files: the lock a writing run holds (rundir.RunLock), and the folders an
# overwrite=true moves an earlier run's files into (rundir.move_aside).
LOCK_NAME = ".hymtl.lock"
REPLACED_PREFIX = "replaced-"
# resume=RUN_DIR: each invocation's own log and .hydra/ go in RUN_DIR/resumed/<time>/
RESUMED_DIR = "resumed"
