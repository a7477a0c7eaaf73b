"""A run directory's life: its files, claims, resume and the Hydra callbacks that guard it."""
