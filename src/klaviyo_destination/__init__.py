"""Delivers RudderStack events to Klaviyo at API revision 2023-02-22."""

__version__ = "0.1.0"
