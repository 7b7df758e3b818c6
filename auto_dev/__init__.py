"""auto-dev: a self-improving evolutionary engine for AI agents."""
