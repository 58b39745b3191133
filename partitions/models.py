"""Engine models (filled in by the engine core)."""
