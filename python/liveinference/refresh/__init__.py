"""Zero-downtime model refresh: sources offer versions, a loader loads them off the
inference path, validation checks them, the policy picks, and the slot swaps atomically."""
