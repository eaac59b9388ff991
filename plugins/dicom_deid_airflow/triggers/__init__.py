"""Triggers for the Cloud Healthcare API."""
