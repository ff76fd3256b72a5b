"""Parsers for what a downloaded image says about itself (ACI manifests, .nspawn settings files).

They take bytes or text and return records: no I/O, no network, no store. Everything they read is
untrusted, so each one validates strictly and keeps only what nspawnctl can honour safely.
"""
