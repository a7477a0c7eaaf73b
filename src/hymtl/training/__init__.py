"""The training core: models, regularizers, losses, the epoch loop, runtime and plots."""
