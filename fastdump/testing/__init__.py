"""Test and benchmark helpers that ship with fastdump (the synthetic vmcore generator)."""
