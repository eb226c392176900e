"""Helpers shared by the test packages: apps in process, fakes, planning and the reference cases."""
