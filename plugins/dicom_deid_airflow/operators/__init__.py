"""Operators for the Cloud Healthcare API."""
