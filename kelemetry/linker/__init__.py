"""Who is related to whom: the owner graph fed by ownerReferences."""
