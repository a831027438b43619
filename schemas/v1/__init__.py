"""Contract v1: the events and HTTP bodies kjs accepts and emits.

Changes here are additive only; a breaking change gets a ``v2`` package beside this one.
"""
