"""The bottom layer: plain value types shared by every package. Standard library only."""
