"""Mutual-information gradient shaping of neural fields (JacobiNeRF): Jacobians, pairs, losses, propagation, edits."""
