"""Benchmarks of Jonot Local: ``python -m bench [joins|call-next|durability|viewers|all]``.

Figures, not tests: see ``bench/README.md`` for what each one means.
"""
