# Makes conf/ importable as the package `hymtl.conf` (see pyproject.toml), so Hydra can load it
# with `pkg://hymtl.conf` from an editable install, an installed wheel and `hymtl-train` alike.
