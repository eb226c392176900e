"""Contract tests for the Klaviyo 2023-02-22 emulator, split by concern."""
