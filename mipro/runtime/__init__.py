"""The one layer that does I/O: sockets, timers, signals, control socket, sd_notify."""
