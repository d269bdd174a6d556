"""The query side: find an object's spans, assemble them into one tree, and render it."""
