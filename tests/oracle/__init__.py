"""The oracle of issue #14: seeded launch scenarios, their ground truth, and the comparison
with every figure of ``launchkit analyze --json``."""
