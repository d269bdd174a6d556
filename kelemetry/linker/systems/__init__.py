"""Linkers of particular systems: each module learns one system's own labels and annotations."""
