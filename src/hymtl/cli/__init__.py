"""The command-line plumbing shared by hymtl's commands: argument parsing, outputs, help."""
