"""Role: the foreign agent's kernel state (agent.py: FaDataplane, and its parts)."""
