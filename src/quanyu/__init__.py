"""Quanyu: one member platform across every channel."""
