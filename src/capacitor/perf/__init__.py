"""Step-time and memory model of one serving replica."""
