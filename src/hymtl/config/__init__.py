"""The config schema and its composition: what a run is asked to do."""
