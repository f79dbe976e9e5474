"""Subscriber profiles (keys, lifetimes, routes, filters) behind one interface."""

from .model import StoreUnavailable, Subscriber, SubscriberStore

__all__ = ["StoreUnavailable", "Subscriber", "SubscriberStore"]
