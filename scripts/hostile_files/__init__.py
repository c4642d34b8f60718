"""The hostile-file fuzzer: real vault files, damaged on purpose, opened in child processes.

``seeds`` writes the files, ``byte_mutations`` and ``row_mutations`` damage copies of them,
``probe`` is the child that opens, reads, writes and checks a copy, ``verdict`` sorts what the
child saw into outcome classes, and ``campaign`` runs many cases. The command is
``scripts/fuzz_vault_files.py``; ``docs/reliability.md`` ("Hostile files") has the figures.
"""
