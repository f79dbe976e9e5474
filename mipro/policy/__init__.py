"""Route optimization policy: subscriber profiles → vendor extensions → dataplane intents."""
