"""Hooks for the Cloud Healthcare API."""
