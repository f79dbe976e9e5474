"""Role: the mobile node's kernel state (agent.py: MnDataplane, and its parts)."""
