"""verifiers environments of llm3d (each also installable on its own)."""
