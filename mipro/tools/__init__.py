"""Operator tools behind `mipro` subcommands that are not daemons."""
