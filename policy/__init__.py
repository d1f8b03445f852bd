"""The regulation (Decision 13/2020/QĐ-UBND) as typed policy and pure rule functions.

Nothing here does I/O beyond reading its YAML, so every rule can be tested
with plain dates and numbers.
"""
