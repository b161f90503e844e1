"""Plumbing shared by both sides: per-event-loop resources.

May import: `.._errors` and the standard library only.
"""
