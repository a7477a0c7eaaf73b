"""`hymtl report`'s parts: statistics, protocol tables and the λ-search section."""
