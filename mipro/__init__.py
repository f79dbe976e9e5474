"""mipro: Mobile IPv4 agents with route optimization without correspondent-node awareness."""

__version__ = "0.1.0"
