"""Training: SFT and GRPO (DESIGN §7) on the ``local`` or ``tinker`` backend, and evaluation."""
