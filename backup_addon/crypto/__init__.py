"""Encryption: the age v1 envelope around every copy the add-on writes."""
