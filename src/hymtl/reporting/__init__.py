"""`hymtl report`'s parts, from the run dirs up to the files it writes.

runs.py (run dirs and what they hold) → settings.py (what tells runs apart) → rows.py (what
every row shares), reference.py and protocols.py (the reference and holdout/kfold rows),
comparisons.py (each row against `none`, with stats.py) → sections.py, protocol_sections.py,
search.py, csv_table.py, plots.py, console.py (what is written and printed, with tables.py) →
document.py (all of it, for hymtl.report)."""
