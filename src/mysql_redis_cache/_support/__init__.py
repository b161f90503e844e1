"""Plumbing shared by both sides: per-event-loop resources and `async with` support.

May import: `.._errors` and the standard library only.
"""
