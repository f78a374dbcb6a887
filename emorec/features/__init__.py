"""Per-frame feature sets (audio LLDs, functionals, geometric and appearance video features)."""
